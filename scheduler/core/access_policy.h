// Who may do what: pure rules, no I/O. The scheduler authenticates a request (token -> Caller)
// and a connection (CURVE key -> worker or client), then asks these functions.
//
//   users       submit; see the queue (other users' jobs without their specs, metrics or
//               reasons of running or finished jobs) and the nodes; see (show), cancel, hold,
//               release (unless an admin held it), read logs and checkpoints (pull, predict,
//               remove) of their own jobs; lower their own jobs' priority
//   admins      all of that on every job, raise priorities, submit as another user, drain and
//               resume nodes
//   workers     only the worker protocol, and only with a key that is admitted
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::core {

struct Caller {
  std::string user;
  bool admin = false;
  bool worker = false;  // a worker agent (by its admitted key), not a user
};

// What a request does to a job, for the refusal message and the audit table.
enum class JobAction { kCancel, kHold, kRelease, kLogs, kCheckpoints, kRemoveCheckpoint, kShow };
const char* JobActionName(JobAction action);

// OK, or PermissionDenied naming the job, its owner and what would allow it.
Status MayActOnJob(const Caller& caller, JobAction action, int64_t job_id,
                   const std::string& owner);
// Releasing a hold: the owner may release only a hold the owner set; a hold an admin put on
// someone's job stays until an admin releases it.
Status MayRelease(const Caller& caller, int64_t job_id, const std::string& owner,
                  bool held_by_admin);
Status MayChangePriority(const Caller& caller, int64_t job_id, const std::string& owner,
                         int64_t current, int64_t requested);
Status MaySubmitAs(const Caller& caller, const std::string& user);
// Users submit at priority 0 or below; only admins above.
Status MaySubmitWithPriority(const Caller& caller, int64_t priority);
Status MayAdministerNodes(const Caller& caller);
// Updating, undeploying or granting a service: its owner or an admin.
Status MayManageService(const Caller& caller, const std::string& service, const std::string& owner);
// Seeing a service (kiln services) and calling its replicas: its owner, the users it is granted
// to, and admins (see, not call: a replica takes the tokens of its owner and grantees only).
bool MaySeeService(const Caller& caller, const std::string& owner,
                   const std::vector<std::string>& grants);

// Connection labels (the ZAP User-Id): "curve:<the peer's public key>". Whether that key may
// speak the worker protocol is decided per message against the current allow-list, so an
// admission or a revocation takes effect without a reconnect.
std::string ConnectionIdOf(const std::string& public_key);
// The key in a connection id; empty when there is none.
std::string KeyOfConnection(const std::string& connection_id);

}  // namespace kiln::core
