#include "scheduler/core/access_policy.h"

namespace kiln::core {

namespace {
constexpr const char* kCurvePrefix = "curve:";
}  // namespace

const char* JobActionName(JobAction action) {
  switch (action) {
    case JobAction::kCancel: return "cancel";
    case JobAction::kHold: return "hold";
    case JobAction::kRelease: return "release";
    case JobAction::kLogs: return "read the logs of";
    case JobAction::kCheckpoints: return "read the checkpoints of";
    case JobAction::kRemoveCheckpoint: return "remove checkpoints of";
    case JobAction::kShow: return "see";
  }
  return "act on";
}

Status MayActOnJob(const Caller& caller, JobAction action, int64_t job_id,
                   const std::string& owner) {
  if (caller.admin || caller.user == owner) return Status::Ok();
  return Status::PermissionDenied("user " + caller.user + " may not " + JobActionName(action) +
                                  " job " + std::to_string(job_id) + ": it belongs to " + owner +
                                  " (only its owner or an admin may)");
}

Status MayRelease(const Caller& caller, int64_t job_id, const std::string& owner,
                  bool held_by_admin) {
  KILN_RETURN_IF_ERROR(MayActOnJob(caller, JobAction::kRelease, job_id, owner));
  if (held_by_admin && !caller.admin) {
    return Status::PermissionDenied("job " + std::to_string(job_id) + " was held by an admin; "
                                    "only an admin may release it (ask one, or cancel it)");
  }
  return Status::Ok();
}

Status MayChangePriority(const Caller& caller, int64_t job_id, const std::string& owner,
                         int64_t current, int64_t requested) {
  if (caller.admin) return Status::Ok();
  if (caller.user != owner) {
    return Status::PermissionDenied("user " + caller.user + " may not change the priority of job " +
                                    std::to_string(job_id) + ": it belongs to " + owner);
  }
  if (requested > current) {
    return Status::PermissionDenied("only an admin may raise a priority: job " +
                                    std::to_string(job_id) + " has " + std::to_string(current) +
                                    ", you may set it to " + std::to_string(current) +
                                    " or lower");
  }
  return Status::Ok();
}

Status MaySubmitAs(const Caller& caller, const std::string& user) {
  if (user.empty() || user == caller.user || caller.admin) return Status::Ok();
  return Status::PermissionDenied("user " + caller.user + " may not submit as " + user +
                                  " (only an admin may)");
}

Status MaySubmitWithPriority(const Caller& caller, int64_t priority) {
  if (priority <= 0 || caller.admin) return Status::Ok();
  return Status::PermissionDenied("priority: only an admin may submit above priority 0, got " +
                                  std::to_string(priority) + "; leave it out or ask an admin to "
                                  "raise it (kiln priority ID N)");
}

Status MayAdministerNodes(const Caller& caller) {
  if (caller.admin) return Status::Ok();
  return Status::PermissionDenied("user " + caller.user +
                                  " may not drain or resume nodes: only an admin may");
}

Status MayManageService(const Caller& caller, const std::string& service,
                        const std::string& owner) {
  if (caller.admin || caller.user == owner) return Status::Ok();
  return Status::PermissionDenied("service " + service + " belongs to " + owner +
                                  ": only its owner or an admin may change it");
}

bool MaySeeService(const Caller& caller, const std::string& owner,
                   const std::vector<std::string>& grants) {
  if (caller.admin || caller.user == owner) return true;
  for (const auto& g : grants) {
    if (g == caller.user) return true;
  }
  return false;
}

std::string ConnectionIdOf(const std::string& public_key) { return kCurvePrefix + public_key; }

std::string KeyOfConnection(const std::string& connection_id) {
  const std::string prefix = kCurvePrefix;
  if (connection_id.rfind(prefix, 0) != 0) return "";
  return connection_id.substr(prefix.size());
}

}  // namespace kiln::core
