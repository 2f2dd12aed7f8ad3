// State changes of jobs and nodes driven by the scheduler itself: transitions (each one recorded
// as a job event), failed attempts, silent workers and time limits.
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "common/quantities.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

Status SchedulerService::Transition(JobRecord& job, core::JobEvent event,
                                    const std::string& reason) {
  const Millis now = clock_.WallMs();
  auto ended = jobs_.Transition(job, event, reason, now);
  if (!ended.ok()) return ended.status();
  dirty_ = true;
  CountTransition(job, now);
  if (job.spec.contains("serve")) NoteReplicaTransition(job);
  if (job.array_job > 0 && core::IsTerminal(job.state)) {
    NoteTrialEnded(job);
    FinishArrayIfDone(job.array_job);
  }
  if (!ended->has_value()) return Status::Ok();
  // The attempt ended: charge what it used to its user's fair share. Nothing to charge (no
  // entry) when it ended the millisecond it started, or the wall clock stepped back.
  const JobTable::EndedAttempt& attempt = **ended;
  ledger_.Charge(attempt.user, core::UsageRate(attempt.request, options_.usage_unit),
                 attempt.started_at, now);
  if (auto entry = ledger_.entries().find(attempt.user); entry != ledger_.entries().end()) {
    KILN_RETURN_IF_ERROR(
        store_->SaveUsage({attempt.user, entry->second.usage, entry->second.as_of}));
  }
  return Status::Ok();
}

void SchedulerService::FailAttempt(JobRecord& job, const std::string& reason, bool permanent) {
  std::string why = "attempt " + std::to_string(job.attempt) + " failed: " + reason;
  if (permanent) why += " (not retried: a retry would fail the same way)";
  Status s = Transition(job, permanent ? core::JobEvent::kFailedPermanently
                                       : core::JobEvent::kAttemptFailed,
                        why);
  if (!s.ok()) {
    spdlog::error("job {}: {}", job.id, s.ToString());
    return;
  }
  if (job.state == core::JobState::kPending) {
    HoldUntilAttemptGone(job.id, job.attempt);
    spdlog::warn("job {} {}; retrying ({} of {} retries used)", job.id, why, job.attempt,
                 job.max_retries);
  } else {
    spdlog::warn("job {} FAILED: {}", job.id, why);
  }
}

void SchedulerService::StopAttempt(const JobRecord& job, const std::string& reason) {
  for (const auto& entry : job.allocation) {
    const std::string node = entry.value("node", "");
    Status stopped = placements_.RequestStop(node, {job.id, job.attempt});
    if (!stopped.ok()) DieOnStoreError(stopped);
    auto w = workers_.find(node);
    if (w != workers_.end() && w->second.up) {
      Send(w->second.peer, protocol::KillJob{job.id, job.attempt, reason});
    }
  }
}

void SchedulerService::StopTimedOutJobs(const std::vector<core::RunningJob>& running) {
  for (int64_t id : core::TimedOut(running, clock_.WallMs())) {
    auto found = store_->GetJob(id);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    const std::string why = "TIMEOUT: ran past its time_limit of " +
                            FormatDuration(job.time_limit_ms / 1000) + "; stopped";
    Status s = Transition(job, core::JobEvent::kTimedOut, why);
    if (!s.ok()) {
      spdlog::error("job {}: {}", id, s.ToString());
      continue;
    }
    StopAttempt(job, "TIMEOUT");
    spdlog::warn("job {} {}", id, why);
  }
}

int SchedulerService::RequeueJobsOn(const std::string& node, const std::string& by) {
  std::vector<int64_t> here;
  for (int64_t id : jobs_.running()) {
    for (const auto& [name, share] : jobs_.At(id).allocation) {
      if (name == node) {
        here.push_back(id);
        break;
      }
    }
  }
  for (int64_t id : here) {
    auto found = store_->GetJob(id);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    RequeueAttempt(job, "requeued: node " + node + " drained by " + by +
                            "; resumes from the checkpoint it saves on the way out");
  }
  return static_cast<int>(here.size());
}

void SchedulerService::RequeueAttempt(JobRecord& job, const std::string& why) {
  const int64_t attempt = job.attempt;
  StopAttempt(job, why);
  job.requeues += 1;  // a requeue uses no retry
  Status s = Transition(job, core::JobEvent::kRequeued, why);
  if (!s.ok()) {
    spdlog::error("job {}: {}", job.id, s.ToString());
    return;
  }
  // Held until the old attempt has left every node; its leader's exit comes after its last
  // checkpoint is uploaded, so the next attempt resumes from that checkpoint (EndPlacement).
  HoldUntilAttemptGone(job.id, attempt);
  spdlog::info("job {} attempt {}: {}", job.id, attempt, why);
}

void SchedulerService::HoldUntilAttemptGone(int64_t job_id, int64_t attempt) {
  bool waits = false;
  for (const auto& [node, here] : placements_.all()) {
    if (here.count({job_id, attempt}) == 0) continue;
    Status marked = placements_.SetJobWaitsForExit(node, {job_id, attempt});
    if (!marked.ok()) DieOnStoreError(marked);
    waits = true;
  }
  ActiveJob* a = jobs_.Find(job_id);
  if (waits && a != nullptr) a->queued.held = true;
}

bool SchedulerService::JobWaitsForAnExit(int64_t job_id) const {
  for (const auto& [node, here] : placements_.all()) {
    for (const auto& [key, p] : here) {
      if (key.first == job_id && p.job_waits_for_exit) return true;
    }
  }
  return false;
}

void SchedulerService::EndPlacement(const std::string& node, const AttemptKey& key) {
  auto removed = placements_.Erase(node, key);
  if (!removed.ok()) DieOnStoreError(removed.status());
  if (!removed->has_value()) return;
  dirty_ = true;
  // The last node of an old attempt is done: its job may be placed again.
  if ((*removed)->job_waits_for_exit && !JobWaitsForAnExit(key.first)) ReleaseRequeued(key.first);
}

void SchedulerService::DieOnStoreError(const Status& status) { throw StoreWriteFailed(status); }

void SchedulerService::ReleaseRequeued(int64_t job_id) {
  ActiveJob* a = jobs_.Find(job_id);
  if (a == nullptr) return;
  auto found = store_->GetJob(job_id);
  a->queued.held = found.ok() && found->has_value() && (*found)->held;
  dirty_ = true;
}

void SchedulerService::MarkWorkerDown(const std::string& name, const std::string& reason) {
  auto w = workers_.find(name);
  if (w == workers_.end()) return;
  w->second.up = false;
  w->second.record.state = "DOWN";
  services_dirty_ = true;  // replicas there are replaced at once (ReconcileServices)
  node_of_peer_.erase(w->second.peer);
  Status s = store_->UpsertNode(w->second.record);
  if (!s.ok()) spdlog::error("cannot mark node {} DOWN: {}", name, s.ToString());
  const size_t held = placements_.On(name).size();
  dirty_ = true;
  if (held == 0) {
    spdlog::warn("worker {} is DOWN: {}", name, reason);
    return;
  }
  // Last heard about a timeout ago: the lease counts from then.
  w->second.lease_ends_at =
      clock_.MonotonicMs() + options_.worker_lease_ms - options_.worker_timeout_ms;
  spdlog::warn("worker {} is DOWN: {}; its {} attempt(s) keep their places until its lease ends "
               "in {} s (its agent stops them itself if it is only cut off)",
               name, reason, held,
               (options_.worker_lease_ms - options_.worker_timeout_ms) / 1000);
}

void SchedulerService::EndLease(const std::string& name, const std::string& reason) {
  if (auto w = workers_.find(name); w != workers_.end()) w->second.lease_ends_at = 0;
  std::set<int64_t> affected;
  std::vector<int64_t> released;  // requeued jobs whose old attempt's exit will never come
  auto removed = placements_.EraseNode(name);
  if (!removed.ok()) DieOnStoreError(removed.status());
  for (const auto& [key, placement] : *removed) {
    affected.insert(key.first);
    if (placement.job_waits_for_exit && !JobWaitsForAnExit(key.first)) {
      released.push_back(key.first);
    }
  }
  spdlog::warn("worker {}: {}", name, reason);
  for (int64_t id : jobs_.running()) {
    const ActiveJob& a = jobs_.At(id);
    for (const auto& [node, share] : a.allocation) {
      if (node == name) affected.insert(id);
    }
  }
  for (int64_t id : released) ReleaseRequeued(id);
  for (int64_t id : affected) {
    auto found = store_->GetJob(id);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    if (job.state != core::JobState::kRunning) continue;
    bool on_node = job.node == name;
    for (const auto& entry : job.allocation) on_node = on_node || entry.value("node", "") == name;
    if (!on_node) continue;
    StopAttempt(job, "worker " + name + " is DOWN");
    FailAttempt(job, "worker " + name + " is DOWN (" + reason + ")");
  }
  dirty_ = true;
}

void SchedulerService::CheckSilentWorkers() {
  const Millis now = clock_.MonotonicMs();
  for (const auto& name : monitor_.TakeExpired(now)) {
    MarkWorkerDown(name, "no heartbeat for " + std::to_string(options_.worker_timeout_ms / 1000.0)
                             .substr(0, 4) + " s");
  }
  std::vector<std::string> ended;
  for (const auto& [name, w] : workers_) {
    if (!w.up && w.lease_ends_at > 0 && now >= w.lease_ends_at) ended.push_back(name);
  }
  for (const auto& name : ended) {
    EndLease(name, "no heartbeat for " + std::to_string(options_.worker_lease_ms / 1000) +
                       " s: its lease ended");
  }
}

void SchedulerService::HeartbeatWorkers() {
  for (auto& [name, w] : workers_) {
    if (w.up) Send(w.peer, protocol::Heartbeat{"scheduler", {}});
  }
}

}  // namespace kiln::service
