// Start-time estimates: after each pass, a shadow schedule (core/start_estimate.h) of the jobs
// that wait, in the order the pass considered them; kept in the view (recomputed every pass,
// never stored) and shown by kiln queue (START) and kiln show.
#include <algorithm>

#include "scheduler/core/start_estimate.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

namespace {
constexpr size_t kMaxEstimatedJobs = 500;  // per pass; the rest show no estimate
}  // namespace

void SchedulerService::NoteProgressRate(ActiveJob& job, const json& report) {
  const auto step = report.find("step");
  const auto total = report.find("total_steps");
  if (step == report.end() || !step->is_number_integer() || total == report.end() ||
      !total->is_number_integer()) {
    return;
  }
  job.step = step->get<int64_t>();
  job.step_at = clock_.WallMs();
  job.total_steps = total->get<int64_t>();
  if (job.first_step < 0 || job.step < job.first_step) {
    job.first_step = job.step;
    job.first_step_at = job.step_at;
  }
}

void SchedulerService::EstimateStartTimes(const core::SchedulingPlan& plan, Millis now) {
  std::vector<std::string> names;
  const std::vector<core::NodeState> nodes = NodeStates(&names);  // the pass's starts included
  std::unordered_map<std::string, int32_t> index;
  for (size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int32_t>(i);
  // The policy's view of what runs (the pass's starts included), with ends from progress too.
  std::vector<core::EstimateRunning> running;
  for (core::RunningJob& r : RunningJobs(index)) {
    const ActiveJob& a = jobs_.At(r.id);
    const Millis by_progress = core::ExpectedEndFromProgress(a.first_step, a.first_step_at, a.step,
                                                             a.step_at, a.total_steps);
    const Millis ends_at = r.end_by > 0 && by_progress > 0 ? std::min(r.end_by, by_progress)
                                                           : std::max(r.end_by, by_progress);
    running.push_back({r.id, std::move(r.request), std::move(r.shares), ends_at});
  }
  std::vector<core::EstimateWaiting> waiting;
  for (const auto& w : plan.waits) {
    ActiveJob* a = jobs_.Find(w.job_id);
    if (a == nullptr) continue;
    a->start_estimate = 0;
    // Waits that no end of a running job cures: their reasons say what would.
    const bool blocked = w.kind == core::WaitKind::kHeld || w.kind == core::WaitKind::kDependency ||
                         w.kind == core::WaitKind::kQuota ||
                         w.kind == core::WaitKind::kInfeasible ||
                         w.kind == core::WaitKind::kNoWorkers;
    // An array's entry stands for its tasks that may start (at most 50 counted here): the jobs
    // behind it wait for them all. Its own estimate is its next task's.
    const int64_t copies = a->array ? std::clamp<int64_t>(a->queued.tasks, 1, 50) : 1;
    for (int64_t c = 0; c < copies; ++c) {
      waiting.push_back({w.job_id, a->queued.request, a->queued.time_limit_ms, blocked});
    }
  }
  const std::vector<core::StartEstimate> estimates =
      core::EstimateStarts(nodes, running, waiting, now, kMaxEstimatedJobs);
  for (size_t i = 0; i < estimates.size(); ++i) {
    const core::StartEstimate& e = estimates[i];
    ActiveJob* a = jobs_.Find(e.job_id);
    if (a == nullptr || waiting[i].blocked) continue;  // held or waiting: its reason says so
    if (i > 0 && estimates[i - 1].job_id == e.job_id) continue;  // an array's later tasks
    a->start_estimate = e.at;
    a->start_after = e.after;
    a->start_nodes.clear();
    for (int32_t n : e.nodes) {
      if (n >= 0 && static_cast<size_t>(n) < names.size()) a->start_nodes.push_back(names[n]);
    }
  }
}

void SchedulerService::AddStartEstimate(json& view, int64_t job_id) const {
  const ActiveJob* a = jobs_.Find(job_id);
  if (a == nullptr || a->state != core::JobState::kPending || a->start_estimate == 0) return;
  view["start_estimate"] = {{"at", a->start_estimate > 0 ? json(a->start_estimate) : json()},
                            {"after", a->start_after},
                            {"nodes", a->start_nodes}};
}

}  // namespace kiln::service
