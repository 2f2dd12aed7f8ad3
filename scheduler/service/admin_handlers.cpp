// Admin-style changes clients ask for: hold, release and priority of a job (or of an array's
// task by its index), and drain, resume and remove of a node. Each checks access, changes state
// inside the turn's transaction, and queues exactly one reply.
#include <spdlog/spdlog.h>

#include "common/job_array.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/job_views.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

void SchedulerService::OnJobAdmin(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::JobAdminRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, job);
  // Everything that can refuse the request is checked before a pending task is given its row.
  if (request.action != "hold" && request.action != "release" && request.action != "priority") {
    return ReplyError(
        req, Status::InvalidArgument("body.action: must be hold, release or priority, got \"" +
                                     request.action + "\""));
  }
  if (request.action == "priority" && (request.priority < -1000000 || request.priority > 1000000)) {
    return ReplyError(req,
                      Status::InvalidArgument("body.priority: must be within -1000000..1000000"));
  }
  bool prospective = false;
  if (request.array_index && !ArrayTaskOf(req, job, *request.array_index, &job, &prospective)) {
    return;
  }
  const std::string target =
      "job " +
      (request.array_index ? TaskName(job.array_job, job.array_index) : std::to_string(job.id));
  if (request.action == "priority") {
    KILN_PERMIT_OR_REPLY(
        core::MayChangePriority(req.caller, job.id, job.user, job.priority, request.priority),
        "priority", target);
  } else if (request.action == "release") {
    KILN_PERMIT_OR_REPLY(core::MayRelease(req.caller, job.id, job.user, job.held_by_admin),
                         request.action, target);
  } else {
    KILN_PERMIT_OR_REPLY(core::MayActOnJob(req.caller, core::JobAction::kHold, job.id, job.user),
                         request.action, target);
  }
  if (!request.array_index && job.array.is_object()) return AdminArray(req, job, request);
  if (!prospective && jobs_.Find(job.id) == nullptr) {
    return ReplyError(
        req, Status::FailedPrecondition("job " + std::to_string(job.id) + " is " +
                                        core::JobStateName(job.state) + "; it has finished"));
  }
  const bool hold = request.action == "hold";
  if (request.action != "priority") {
    if (hold && job.state != core::JobState::kPending) {
      return ReplyError(
          req, Status::FailedPrecondition("job " + std::to_string(job.id) + " is " +
                                          core::JobStateName(job.state) +
                                          "; only PENDING jobs can be held (cancel stops it)"));
    }
    if (job.held == hold) {
      return ReplyError(
          req, Status::FailedPrecondition(target + " is already " + (hold ? "held" : "not held")));
    }
  }
  if (prospective && !MakeArrayTask(req, &job)) return;
  ActiveJob& a = jobs_.At(job.id);
  std::string what;
  if (request.action == "priority") {
    what = "priority " + std::to_string(job.priority) + " -> " + std::to_string(request.priority) +
           " by " + req.caller.user;
    job.priority = request.priority;
    jobs_.SetPriority(a, request.priority);
  } else {
    job.held = a.queued.held = hold;
    // An admin's hold on another user's job is the admin's to release.
    job.held_by_admin = hold && req.caller.admin && req.caller.user != job.user;
    what = (hold ? "held by " : "released by ") + req.caller.user +
           (job.held_by_admin ? " (an admin: only an admin may release it)" : "");
  }
  Status saved = store_->UpdateJob(job);
  if (saved.ok()) {
    const std::string state = core::JobStateName(job.state);
    saved = store_->AddEvent({job.id, clock_.WallMs(), state, state, what});
  }
  if (!saved.ok()) return ReplyError(req, saved);
  spdlog::info("job {}: {}", job.id, what);
  Audit(req, request.action, target, Status::Ok(), what);
  dirty_ = true;
  WithLiveReason(job);
  Reply(req, protocol::DataReply{JobSummaryView(job)});
}

void SchedulerService::OnNodeAdmin(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::NodeAdminRequest, request);
  KILN_PERMIT_OR_REPLY(core::MayAdministerNodes(req.caller), "node." + request.action,
                       "node " + request.node);
  auto w = workers_.find(request.node);
  if (w == workers_.end()) {
    return ReplyError(req,
                      Status::NotFound("no node named \"" + request.node + "\" (see kiln nodes)"));
  }
  if (request.action == "remove") return RemoveNode(req, w->second);
  NodeRecord& record = w->second.record;
  int requeued = 0;
  if (request.action == "drain" || request.action == "drain_requeue") {
    record.drained = true;
    record.drain_reason = request.reason.empty() ? "drained by admin" : request.reason;
    if (request.action == "drain_requeue") requeued = RequeueJobsOn(record.name, req.caller.user);
  } else if (request.action == "resume") {
    record.drained = false;
    record.drain_reason.clear();
  } else {
    return ReplyError(
        req, Status::InvalidArgument("body.action: must be drain, drain_requeue, resume or "
                                     "remove, "
                                     "got \"" +
                                     request.action + "\""));
  }
  Status saved = store_->UpsertNode(record);
  if (!saved.ok()) return ReplyError(req, saved);
  spdlog::info("node {}: {}{} by {}", record.name, request.action,
               record.drained ? " (" + record.drain_reason + ")" : "", req.caller.user);
  Audit(req, "node." + request.action, "node " + record.name, Status::Ok(),
        record.drain_reason +
            (requeued > 0 ? "; requeued " + std::to_string(requeued) + " jobs" : ""));
  dirty_ = true;
  Reply(req, protocol::DataReply{NodeView(record, UseOf(record.name))});
}

void SchedulerService::RemoveNode(Request& req, const Worker& w) {
  const std::string name = w.record.name;
  if (w.up) {
    return ReplyError(req, Status::FailedPrecondition("node " + name +
                                                      " is UP: stop its kiln-worker (or revoke "
                                                      "its key: kiln-scheduler worker revoke " +
                                                      name +
                                                      ") and "
                                                      "remove it once kiln nodes shows it DOWN"));
  }
  if (const auto& held = placements_.On(name); !held.empty()) {
    return ReplyError(req, Status::FailedPrecondition(
                               "node " + name + " still holds " + std::to_string(held.size()) +
                               " attempt(s) that have not ended; try again once they have"));
  }
  auto removed = store_->RemoveNode(name);
  if (!removed.ok()) return ReplyError(req, removed.status());
  if (!w.peer.empty()) node_of_peer_.erase(w.peer);
  monitor_.Forget(name);
  workers_.erase(name);  // `w` dangles from here on
  spdlog::info("node {}: removed by {}", name, req.caller.user);
  Audit(req, "node.remove", "node " + name, Status::Ok());
  dirty_ = true;
  Reply(req, protocol::DataReply{json{{"name", name}, {"state", "REMOVED"}}});
}

}  // namespace kiln::service
