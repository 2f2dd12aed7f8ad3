// State changes of jobs and nodes driven by the scheduler itself: transitions (each one recorded
// as a job event), failed attempts, silent workers, and scheduling passes.
#include <spdlog/spdlog.h>

#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

Status SchedulerService::Transition(JobRecord& job, core::JobEvent event,
                                    const std::string& reason) {
  auto next = core::NextState(job.state, event, job.attempt, job.max_retries);
  if (!next.ok()) return next.status();
  const core::JobState from = job.state;
  const Millis now = clock_.WallMs();
  job.state = *next;
  job.reason = reason;
  if (job.state == core::JobState::kRunning) job.started_at = now;
  if (core::IsTerminal(job.state)) job.finished_at = now;
  KILN_RETURN_IF_ERROR(store_->UpdateJob(job));
  return store_->AddEvent({job.id, now, core::JobStateName(from), core::JobStateName(job.state),
                           reason});
}

void SchedulerService::FailAttempt(JobRecord& job, const std::string& reason) {
  std::string why = "attempt " + std::to_string(job.attempt) + " failed: " + reason;
  Status s = Transition(job, core::JobEvent::kAttemptFailed, why);
  if (!s.ok()) {
    spdlog::error("job {}: {}", job.id, s.ToString());
    return;
  }
  dirty_ = true;
  if (job.state == core::JobState::kPending) {
    spdlog::warn("job {} {}; retrying ({} of {} retries used)", job.id, why, job.attempt,
                 job.max_retries);
  } else {
    spdlog::warn("job {} FAILED: {}", job.id, why);
  }
}

void SchedulerService::MarkWorkerDown(const std::string& name, const std::string& reason) {
  auto w = workers_.find(name);
  if (w != workers_.end()) {
    w->second.up = false;
    w->second.record.state = "DOWN";
    node_of_peer_.erase(w->second.peer);
    Status s = store_->UpsertNode(w->second.record);
    if (!s.ok()) spdlog::error("cannot mark node {} DOWN: {}", name, s.ToString());
  }
  live_.erase(name);
  spdlog::warn("worker {} is DOWN: {}", name, reason);
  auto jobs = store_->ListJobs(false);
  if (!jobs.ok()) return;
  for (auto job : *jobs) {
    if (job.state == core::JobState::kRunning && job.node == name) {
      FailAttempt(job, "worker " + name + " is DOWN (" + reason + ")");
    }
  }
  dirty_ = true;
}

void SchedulerService::CheckSilentWorkers() {
  for (const auto& name : monitor_.TakeExpired(clock_.MonotonicMs())) {
    MarkWorkerDown(name, "no heartbeat for " + std::to_string(options_.worker_timeout_ms / 1000.0)
                             .substr(0, 4) + " s");
  }
}

void SchedulerService::HeartbeatWorkers() {
  for (auto& [name, w] : workers_) {
    if (w.up) Send(w.peer, protocol::Heartbeat{"scheduler", {}});
  }
}

void SchedulerService::SchedulingPass() {
  auto jobs = store_->ListJobs(false);
  if (!jobs.ok()) {
    spdlog::error("scheduling pass: {}", jobs.status().ToString());
    return;
  }
  std::vector<core::NodeView> nodes;
  for (const auto& [name, w] : workers_) {
    core::NodeView n{name, w.record.slots, 0, w.record.gpus, 0, w.up};
    for (const auto& [key, a] : live_[name]) {
      n.used_slots += a.ranks;
      n.used_gpus += a.gpus;
    }
    nodes.push_back(n);
  }
  std::vector<core::PendingJobView> queue;
  std::map<int64_t, JobRecord*> by_id;
  for (auto& j : *jobs) {
    if (j.state != core::JobState::kPending) continue;
    queue.push_back({j.id, j.ranks, j.gpus_per_rank});
    by_id[j.id] = &j;
  }
  if (queue.empty()) return;
  core::PlacementPlan plan = policy_.Plan(nodes, queue);
  for (const auto& p : plan.placements) Launch(*by_id[p.job_id], p);
  for (const auto& w : plan.waiting) {
    JobRecord& job = *by_id[w.job_id];
    if (job.reason == w.reason) continue;
    job.reason = w.reason;
    Status s = store_->UpdateJob(job);
    if (!s.ok()) spdlog::error("job {}: {}", job.id, s.ToString());
  }
}

void SchedulerService::Launch(JobRecord& job, const core::Placement& placement) {
  Worker& w = workers_.at(placement.node);
  job.attempt += 1;
  job.node = placement.node;
  Status s = Transition(job, core::JobEvent::kPlaced,
                        "placed on " + placement.node + " (attempt " +
                            std::to_string(job.attempt) + ")");
  if (!s.ok()) {
    spdlog::error("job {}: cannot start: {}", job.id, s.ToString());
    return;
  }
  live_[placement.node][{job.id, job.attempt}] = {placement.ranks, placement.gpus,
                                                   clock_.MonotonicMs(), false};
  protocol::LaunchJob launch{job.id, job.attempt, job.spec, placement.ranks, -1, 0, "", ""};
  // Resume from this job's latest checkpoint, or else from the one it was submitted to continue.
  auto own = store_->FindCheckpoint(job.id, -1);
  std::optional<CheckpointRecord> from;
  if (own.ok() && own->has_value()) {
    from = **own;
  } else if (job.resume_job > 0) {
    auto other = store_->FindCheckpoint(job.resume_job, job.resume_step);
    if (other.ok() && other->has_value()) from = **other;
  }
  if (from) {
    launch.resume_job = from->job_id;
    launch.resume_step = from->step;
    launch.resume_sha256 = from->sha256;
    launch.resume_path = from->path;
    live_[placement.node][{job.id, job.attempt}].resume = {from->job_id, from->step};
  }
  spdlog::info("job {} attempt {} -> {} ({} ranks{})", job.id, job.attempt, placement.node,
               placement.ranks,
               launch.resume_step >= 0 ? ", resuming at step " + std::to_string(launch.resume_step)
                                       : "");
  Send(w.peer, launch);
}

}  // namespace kiln::service
