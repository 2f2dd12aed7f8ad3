// Read-only mode: what the scheduler does while it cannot write its database (a full disk).
// See SchedulerService::EnterReadOnly in scheduler_service.h.
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>

#include "common/config.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

namespace {

// The raw database error is for the log (it may name files); peers get what they can act on.
Status RefusedChange() {
  return Status::Unavailable(
      "the scheduler cannot save changes now: the disk that holds its state is full, or its "
      "database cannot be written; nothing of this request was done. Reads (queue, show, logs, "
      "nodes, ckpt ls/pull) still work. An admin must free space where the scheduler keeps its "
      "state (its log names the folder); then try again");
}

// Below this much free space the disk counts as full, even when a small probe commits: the
// probe may land in space the failed turn already took.
constexpr int64_t kMinFreeBytes = 64 << 20;
constexpr Millis kMaxWriteProbeEveryMs = 30000;

// Free bytes on the file system of `dir` for an unprivileged writer; -1 when unknown.
int64_t FreeBytes(const std::string& dir) {
  struct statvfs fs;
  if (::statvfs(dir.c_str(), &fs) != 0) return -1;
  return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
}

}  // namespace

void SchedulerService::EnterReadOnly(const Status& why) {
  (void)store_->Rollback();  // when the failed commit left the transaction open
  outbox_.clear();
  outbox_bytes_ = 0;
  deleted_checkpoints_.clear();
  Status rebuilt = RebuildFromStore();
  if (!rebuilt.ok()) {
    spdlog::critical("cannot read the database either, exiting: {}", rebuilt.ToString());
    std::exit(70);
  }
  dirty_ = true;
  const Millis now = clock_.MonotonicMs();
  // A node whose lease ended in the undone turn holds its placements again: a new lease, as
  // after a restart, so that they are failed and placed elsewhere if it stays away.
  for (auto& [name, w] : workers_) {
    if (!w.up && w.lease_ends_at == 0 && !placements_.On(name).empty()) {
      w.lease_ends_at = now + options_.worker_lease_ms;
    }
  }
  // Back off when the disk filled again soon after it had room: each probe that lets a turn
  // through costs that turn's requests.
  write_probe_every_ms_ = now - left_read_only_at_ < 30000
                              ? std::min(2 * write_probe_every_ms_, kMaxWriteProbeEveryMs)
                              : 1000;
  if (!read_only_) {
    spdlog::error(
        "cannot write the database in {}: {}. This turn was undone ({} requests "
        "refused); changes are refused until a write succeeds again (tried every "
        "second), reads are still served",
        options_.state_dir, why.ToString(), turn_requests_.size());
  }
  read_only_ = why;
  next_write_probe_at_ = now + write_probe_every_ms_;
  const Status refused = RefusedChange();
  for (const auto& [peer, id] : turn_requests_) {
    if (peer.empty()) continue;
    Send(peer, protocol::ErrorReply{StatusCodeName(refused.code()), refused.message(), {}}, id);
  }
  turn_requests_.clear();
  SendOutbox();
}

bool SchedulerService::TryLeaveReadOnly() {
  const Millis now = clock_.MonotonicMs();
  if (now < next_write_probe_at_) return false;
  next_write_probe_at_ = now + write_probe_every_ms_;
  const int64_t free = FreeBytes(options_.state_dir);
  if (free >= 0 && free < kMinFreeBytes) return false;
  Status probe = store_->ProbeWrite();
  if (!probe.ok()) {
    read_only_ = probe;
    return false;
  }
  spdlog::warn("the database in {} can be written again: accepting changes", options_.state_dir);
  read_only_.reset();
  left_read_only_at_ = now;
  dirty_ = true;
  // Workers' account reports were dropped meanwhile: ask again for every mapped account.
  mapped_accounts_.clear();
  external_changes_ = -1;
  return true;
}

void SchedulerService::ReadOnlyTurn() {
  RolledBackTurn([this] {
    NoticeAdminChanges();
    ForEachWaitingMessage([this](const transport::Frames& frames, const std::string& connection) {
      ServeReadOnly(frames, connection);
    });
    // Workers must keep hearing from the scheduler, or their agents stop the jobs after a lease.
    const Millis now = clock_.MonotonicMs();
    if (now >= next_heartbeat_at_) {
      next_heartbeat_at_ = now + kHeartbeatIntervalMs;
      HeartbeatWorkers();
    }
  });
  if (clock_.MonotonicMs() >= next_metrics_at_) PublishMetrics();
}

void SchedulerService::ServeReadOnly(const transport::Frames& frames,
                                     const std::string& connection) {
  if (frames.size() < 2) return;
  auto envelope = protocol::DecodeEnvelope(frames[1]);
  if (!envelope.ok()) return HandleOne(frames, connection);  // answered with the decode error
  const Route* route = FindRoute(envelope->type);
  if (route != nullptr && route->reads_only) return HandleOne(frames, connection);
  if (route != nullptr && route->from_worker) {
    // Worker messages are dropped unanswered: each is sent again until acknowledged (exits, log
    // lines, checkpoints) or soon replaced (heartbeats, progress).
    // Unanswered, but it shows the worker is alive: it must not be declared lost meanwhile.
    if (auto name = node_of_peer_.find(frames[0]); name != node_of_peer_.end()) {
      monitor_.Heard(name->second, clock_.MonotonicMs());
    }
    return;
  }
  const Status refused = RefusedChange();
  Send(frames[0], protocol::ErrorReply{StatusCodeName(refused.code()), refused.message(), {}},
       envelope->id);
}

}  // namespace kiln::service
