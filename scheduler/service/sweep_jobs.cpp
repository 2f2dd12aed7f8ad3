// Sweeps: an array whose tasks are trials (array_jobs.cpp does the rest). Each epoch report of a
// trial goes to ASHA (scheduler/core/sweep.h), whose record is kept in the array's row; a trial
// it stops is cancelled with an EarlyStopped reason and saves a checkpoint on the way out.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "scheduler/core/checkpoint_retention.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

void SchedulerService::SaveArrayState(int64_t array_id, const ArrayState& array) {
  auto row = store_->GetJob(array_id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) return;
  JobRecord parent = **row;
  parent.array = array.ToJson();
  Status saved = store_->UpdateJob(parent);
  if (!saved.ok()) DieOnStoreError(saved);
}

void SchedulerService::NoteTrialReport(ActiveJob& task, const json& report) {
  ActiveJob* array_job = jobs_.Find(task.array_job);
  if (array_job == nullptr || !array_job->array || !array_job->array->sweep) return;
  ArrayState& array = *array_job->array;
  const core::SweepSpec& spec = *array.sweep;
  const auto value = report.find(spec.metric);
  const auto epoch = report.find("epoch");
  if (value == report.end() || !value->is_number() || epoch == report.end() ||
      !epoch->is_number_integer()) {
    return;
  }
  const int64_t array_id = task.array_job, task_id = task.queued.id, trial = task.array_index;
  const core::TrialDecision decision =
      core::ReportTrialEpoch(spec, array.sweep_state, trial, epoch->get<int64_t>(),
                             task.train_epochs, value->get<double>());
  if (!decision.recorded) return;  // a repeated or out-of-range report: nothing to write
  SaveArrayState(array_id, array);
  if (!decision.stop) return;
  auto found = store_->GetJob(task_id);
  if (!found.ok()) DieOnStoreError(found.status());
  if (!found->has_value() || (*found)->state != core::JobState::kRunning) return;
  JobRecord job = **found;
  // `task` and `array_job` may be gone from the view after this (the trial, and the sweep with
  // its last trial, end here).
  Status stopped = Transition(job, core::JobEvent::kCancel, decision.reason);
  if (!stopped.ok()) {
    spdlog::error("job {}: {}", task_id, stopped.ToString());
    return;
  }
  StopAttempt(job, decision.reason);
  spdlog::info("sweep {} trial {} (job {}): {}", array_id, trial, task_id, decision.reason);
}

void SchedulerService::NoteTrialEnded(const JobRecord& task) {
  ActiveJob* array_job = jobs_.Find(task.array_job);
  if (array_job == nullptr || !array_job->array || !array_job->array->sweep) return;
  ArrayState& array = *array_job->array;
  auto checkpoints = store_->Checkpoints(task.id);
  if (!checkpoints.ok()) DieOnStoreError(checkpoints.status());
  if (checkpoints->empty()) return;
  for (const auto& c : *checkpoints) {
    auto m = c.metrics.find(array.sweep->metric);
    core::RecordTrialCheckpoint(*array.sweep, array.sweep_state, task.array_index, c.epoch,
                                m != c.metrics.end() && m->is_number()
                                    ? std::optional<double>(m->get<double>())
                                    : std::nullopt);
  }
  SaveArrayState(task.array_job, array);
}

json SchedulerService::SweepView(const JobRecord& row, const ArrayState& array) {
  const core::SweepSpec& spec = *array.sweep;
  json trials = json::array();
  for (int64_t trial = 0; trial < array.tasks; ++trial) {
    json t = {{"trial", trial},
              {"params", core::TrialParams(spec, trial)},
              {"job_id", nullptr},
              {"best", nullptr},
              {"epochs", 0},
              {"state", array.pending.Contains(trial) ? "PENDING" : "CANCELLED"},
              {"reason", array.pending.Contains(trial) ? "not started" : "dropped by a cancel"}};
    if (auto rec = array.sweep_state.trials.find(trial); rec != array.sweep_state.trials.end()) {
      if (rec->second.best) t["best"] = *rec->second.best;
      t["epochs"] = rec->second.epochs;
    }
    auto id = store_->FindArrayTask(row.id, trial);
    if (!id.ok()) DieOnStoreError(id.status());
    if (*id) {
      auto job = store_->GetJob(**id);
      if (!job.ok()) DieOnStoreError(job.status());
      if (job->has_value()) {
        JobRecord j = **job;
        WithLiveReason(j);
        t["job_id"] = j.id;
        const bool stopped = j.reason.rfind("EarlyStopped:", 0) == 0;
        t["state"] = stopped ? "STOPPED" : core::JobStateName(j.state);
        t["reason"] = j.reason;
      }
    }
    trials.push_back(std::move(t));
  }
  // Best first; trials without a value last, in trial order.
  std::stable_sort(trials.begin(), trials.end(), [&](const json& a, const json& b) {
    if (a["best"].is_null() || b["best"].is_null())
      return !a["best"].is_null() && b["best"].is_null();
    const double x = a["best"].get<double>(), y = b["best"].get<double>();
    return spec.maximize ? x > y : x < y;
  });
  json view = {
      {"objective", {{"metric", spec.metric}, {"mode", spec.maximize ? "max" : "min"}}},
      {"max_trials", spec.max_trials},
      {"max_concurrent", spec.max_concurrent},
      {"early_stopping", spec.asha ? json{{"type", "asha"},
                                          {"min_epochs", spec.asha->min_epochs},
                                          {"reduction_factor", spec.asha->reduction_factor}}
                                   : json()},
      {"stopped", array.sweep_state.stopped},
      {"trials", trials},
      {"best", nullptr}};
  if (!trials.empty() && !trials[0]["best"].is_null() && trials[0]["job_id"].is_number()) {
    json best = trials[0];
    const int64_t job_id = best["job_id"].get<int64_t>();
    // Its best checkpoint by the objective: what `kiln deploy JOB --best` serves when the trial's
    // checkpoint.best_metric is the objective (the default, test_accuracy, is).
    auto all = store_->Checkpoints(job_id);
    if (!all.ok()) DieOnStoreError(all.status());
    std::vector<core::RetainedCheckpoint> ranked;
    for (const auto& c : *all) {
      auto m = c.metrics.find(spec.metric);
      ranked.push_back({c.step, m != c.metrics.end() && m->is_number()
                                    ? std::optional<double>(m->get<double>())
                                    : std::nullopt});
    }
    auto step = core::BestCheckpoint(ranked, spec.maximize);
    if (!step && !all->empty()) step = all->back().step;
    best["checkpoint_step"] = step ? json(*step) : json();
    view["best"] = std::move(best);
  }
  return view;
}

}  // namespace kiln::service
