// Retention: the scheduler deletes, a bounded batch per turn, the logs and events of jobs that
// finished long ago, old audit rows and abandoned checkpoint uploads (core/record_retention.h).
#include <spdlog/spdlog.h>

#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

namespace {
// Rows per kind per prune: a batch commits with the turn, so it must stay short.
constexpr int64_t kPruneBatch = 5000;
constexpr Millis kPruneAgainMs = 1000;  // when a batch was full
}  // namespace

void SchedulerService::PruneOldRecords() {
  const core::RecordRetention& policy = options_.retention;
  const Millis now = clock_.WallMs();
  bool more = false;
  int64_t logs = 0, events = 0, audit = 0;
  // Jobs that finished in [pruned_until, cutoff): each prune looks only at jobs it has not done.
  auto prune_jobs = [&](Millis keep, Millis* pruned_until, auto prune, int64_t* count) {
    auto cutoff = core::RetentionCutoff(now, keep);
    if (!cutoff) return;
    auto n = (store_.get()->*prune)(*pruned_until, *cutoff, kPruneBatch);
    if (!n.ok()) {
      spdlog::warn("pruning: {}", n.status().ToString());
      return;
    }
    *count = *n;
    if (*n < kPruneBatch) {
      *pruned_until = *cutoff;
    } else {
      more = true;
    }
  };
  prune_jobs(policy.logs_ms, &logs_pruned_until_, &Store::PruneJobLogs, &logs);
  prune_jobs(policy.events_ms, &events_pruned_until_, &Store::PruneJobEvents, &events);
  if (auto cutoff = core::RetentionCutoff(now, policy.audit_ms)) {
    auto n = store_->PruneAudit(*cutoff, kPruneBatch);
    if (n.ok()) {
      audit = *n;
      more = more || *n == kPruneBatch;
    }
  }
  int uploads = 0;
  if (auto cutoff = core::RetentionCutoff(now, policy.uploads_ms)) {
    uploads = checkpoints_.RemovePartsUntouchedSince(*cutoff);
  }
  if (logs + events + audit + uploads > 0) {
    spdlog::info("retention: pruned {} log lines, {} job events, {} audit rows, {} abandoned "
                 "uploads", logs, events, audit, uploads);
  }
  next_prune_at_ =
      clock_.MonotonicMs() + (more ? kPruneAgainMs : core::PruneInterval(options_.retention));
}

}  // namespace kiln::service
