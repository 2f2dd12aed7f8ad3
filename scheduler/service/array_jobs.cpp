// Job arrays: one row and one queue entry for all of an array's pending tasks; a task gets a row
// of its own when it starts (or is cancelled, held or reprioritised by its index), and from then
// on is an ordinary job that knows its array. The array's row ends when its last task has.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "common/job_array.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

namespace {
constexpr size_t kMaxSweepBytes = 64 << 10;       // a sweep without its base
constexpr size_t kMaxSweepCheckBytes = 32 << 20;  // trials x base, parsed at submit
}  // namespace

bool SchedulerService::PrepareArray(Request& req, const ArrayState& array, JobRecord& job) {
  // An array's tasks differ only in the index's digits: the first and the last stand for them
  // all. A sweep's trials differ in their parameters: each is checked (at most 1000).
  std::vector<int64_t> checked;
  if (array.sweep) {
    checked = array.pending.Expand();
  } else {
    checked = {*array.pending.First(), array.pending.runs().back().last};
    if (checked[0] == checked[1]) checked.pop_back();
  }
  std::vector<std::string> errors;
  for (int64_t index : checked) {
    SpecParseResult parsed = ParseJobSpec(array.TrialSpec(job.spec, index));
    for (auto& e : array.TaskSpecErrors(index, parsed.errors)) errors.push_back(std::move(e));
    if (errors.size() >= 20) break;
  }
  if (!errors.empty()) {
    ReplyError(req,
               Status::InvalidArgument(std::string(array.sweep ? "sweep" : "job spec") +
                                       " rejected: " + std::to_string(errors.size()) + " error(s)"),
               errors);
    return false;
  }
  job.array = array.ToJson();
  return true;
}

bool SchedulerService::ArrayOfSubmit(Request& req, const protocol::SubmitRequest& request,
                                     std::optional<ArrayState>* out) {
  if (request.array && request.sweep) {
    ReplyError(req, Status::InvalidArgument("body.array: a sweep makes its own array of trials; "
                                            "send array or sweep, not both"));
    return false;
  }
  ArrayState state;
  std::string text = request.array.value_or("");
  if (request.sweep) {
    if (!request.sweep->is_object() || request.sweep->contains("base")) {
      ReplyError(req, Status::InvalidArgument("body.sweep: the sweep without \"base\" (the "
                                              "base job spec is body.spec)"));
      return false;
    }
    if (const size_t bytes = request.sweep->dump().size(); bytes > kMaxSweepBytes) {
      ReplyError(req, Status::InvalidArgument(
                          "body.sweep: " + std::to_string(bytes / 1024) +
                          " KiB is over the limit of " + std::to_string(kMaxSweepBytes / 1024) +
                          " KiB (the base spec is separate); search fewer or smaller values"));
      return false;
    }
    json doc = *request.sweep;
    doc["base"] = request.spec;
    core::SweepParseResult sweep = core::ParseSweepSpec(doc);
    // Every trial's spec is parsed (PrepareArray): their cost is bounded up front.
    const size_t base_bytes = request.spec.dump().size();
    if (sweep.ok() &&
        base_bytes * static_cast<size_t>(sweep.spec.max_trials) > kMaxSweepCheckBytes) {
      sweep.errors.push_back("max_trials: " + std::to_string(sweep.spec.max_trials) +
                             " trials of a " + std::to_string(base_bytes / 1024) +
                             " KiB base are over " + std::to_string(kMaxSweepCheckBytes >> 20) +
                             " MiB of specs to check; make the base smaller or the sweep shorter");
    }
    // Each trial must report the objective (a searched loss or split changes what it reports).
    for (int64_t t = 0; sweep.ok() && t < sweep.spec.max_trials; ++t) {
      const std::vector<std::string> metrics = core::ObjectiveMetricsOf(
          core::ApplyParams(request.spec, core::TrialParams(sweep.spec, t)));
      if (std::find(metrics.begin(), metrics.end(), sweep.spec.metric) != metrics.end()) continue;
      std::string known;
      for (const auto& m : metrics) known += (known.empty() ? "" : ", ") + m;
      sweep.errors.push_back("objective.metric: " +
                             (t > 0 ? "trial " + std::to_string(t) + ": the" : std::string("the")) +
                             " trials never report \"" + sweep.spec.metric + "\"; " +
                             (known.empty()
                                  ? std::string("they evaluate on nothing (give data.test_path or "
                                                "data.validation_split)")
                                  : "each epoch reports " + known));
    }
    if (!sweep.ok()) {
      ReplyError(req,
                 Status::InvalidArgument("sweep rejected: " + std::to_string(sweep.errors.size()) +
                                         " error(s)"),
                 sweep.errors);
      return false;
    }
    doc.erase("base");
    doc["max_trials"] = sweep.spec.max_trials;  // stored as decided, whatever the defaults become
    doc["max_concurrent"] = sweep.spec.max_concurrent;
    state.sweep_doc = std::move(doc);
    text = "0-" + std::to_string(sweep.spec.max_trials - 1) + "%" +
           std::to_string(sweep.spec.max_concurrent);
    state.sweep = std::move(sweep.spec);
    state.sweep->base = json();  // the row's spec is the base
  }
  auto spec = ParseArraySpec(text);
  if (!spec.ok()) {
    ReplyError(req, Status::InvalidArgument("job array rejected: 1 error(s)"),
               {spec.status().message()});
    return false;
  }
  state.indices = spec->indices.ToString();
  state.tasks = spec->indices.Count();
  state.max_running = spec->max_running;
  state.pending = spec->indices;
  *out = std::move(state);
  return true;
}

std::optional<int64_t> SchedulerService::StartArrayTask(ActiveJob& array,
                                                        std::optional<int64_t> index) {
  const int64_t array_id = array.queued.id;
  auto row = store_->GetJob(array_id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) return std::nullopt;
  JobRecord parent = **row;
  auto taken = jobs_.TakeArrayTask(array, index);
  if (!taken) return std::nullopt;
  parent.array = array.array->ToJson();
  Status saved = store_->UpdateJob(parent);
  if (!saved.ok()) DieOnStoreError(saved);

  const Millis now = clock_.WallMs();
  JobRecord task = parent;
  task.id = 0;
  task.request_id = parent.request_id + "#" + std::to_string(*taken);
  task.spec = array.array->TrialSpec(parent.spec, *taken);
  task.array = json();
  task.array_job = array_id;
  task.array_index = *taken;
  task.state = core::JobState::kPending;
  task.reason = "Waiting: not yet scheduled";
  task.progress = json::object();
  task.allocation = json::array();
  SpecParseResult parsed = ParseJobSpec(task.spec);
  if (!parsed.ok()) {  // the first and last task's specs parsed at submit; this one does not
    task.state = core::JobState::kFailed;
    task.reason = "Spec: task " + std::to_string(*taken) + " of array " + std::to_string(array_id) +
                  ": " + SpecErrorStrings(parsed.errors).front();
    task.finished_at = now;
  } else {
    task.name = parsed.spec.name;
  }
  auto id = store_->InsertJob(task);
  if (!id.ok()) DieOnStoreError(id.status());
  task.id = *id;
  saved = store_->AddEvent(
      {task.id, now, "", core::JobStateName(task.state),
       "task " + std::to_string(*taken) + " of array " + std::to_string(array_id)});
  if (!saved.ok()) DieOnStoreError(saved);
  dirty_ = true;
  if (task.state == core::JobState::kFailed) {
    FinishArrayIfDone(array_id);
    return std::nullopt;
  }
  jobs_.Track(task, parsed.spec);
  return task.id;
}

void SchedulerService::FinishArrayIfDone(int64_t array_id) {
  ActiveJob* array = jobs_.Find(array_id);
  if (array == nullptr || !jobs_.ArrayDone(*array)) return;
  auto states = store_->ArrayTaskStates(array_id);
  if (!states.ok()) DieOnStoreError(states.status());
  auto count = [&](const char* state) {
    auto it = states->find(state);
    return it == states->end() ? int64_t{0} : it->second;
  };
  // A sweep's trials that ASHA stopped ended CANCELLED, as it meant them to.
  const int64_t stopped = array->array->sweep ? array->array->sweep_state.stopped : 0;
  ArrayTally tally{count("COMPLETED") + stopped, count("FAILED"),
                   std::max<int64_t>(0, count("CANCELLED") - stopped) + array->array->cancelled};
  auto row = store_->GetJob(array_id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) return;
  JobRecord parent = **row;
  const core::JobState final = *core::ParseJobState(ArrayFinalState(tally));
  std::string reason = "array: " + DescribeTally(tally);
  if (const ArrayState& a = *array->array; a.sweep) {
    reason = "sweep: " + std::to_string(a.tasks) + " trials, " +
             std::to_string(tally.completed - stopped) + " completed, " + std::to_string(stopped) +
             " stopped early";
    if (tally.failed > 0) reason += ", " + std::to_string(tally.failed) + " failed";
    if (tally.cancelled > 0) reason += ", " + std::to_string(tally.cancelled) + " cancelled";
    std::optional<std::pair<int64_t, double>> best;
    for (const auto& [trial, rec] : a.sweep_state.trials) {
      if (rec.best &&
          (!best || (a.sweep->maximize ? *rec.best > best->second : *rec.best < best->second))) {
        best = {trial, *rec.best};
      }
    }
    if (best) {
      auto id = store_->FindArrayTask(array_id, best->first);
      if (!id.ok()) DieOnStoreError(id.status());
      char value[32];
      std::snprintf(value, sizeof value, "%.4g", best->second);
      reason += "; best: trial " + std::to_string(best->first) +
                (*id ? " (job " + std::to_string(**id) + ")" : std::string()) + ", " +
                a.sweep->metric + " " + value;
    }
  }
  Status s = jobs_.FinishArray(parent, final, reason, clock_.WallMs());
  if (!s.ok()) DieOnStoreError(s);
  dirty_ = true;
  spdlog::info("array {} {}: {}", array_id, core::JobStateName(final), DescribeTally(tally));
}

void SchedulerService::FailArray(int64_t array_id, const std::string& reason) {
  ActiveJob* array = jobs_.Find(array_id);
  if (array == nullptr || !array->array) return;
  jobs_.DropPendingTasks(*array);
  for (int64_t id : jobs_.TasksOf(array_id)) {
    auto row = store_->GetJob(id);
    if (!row.ok()) DieOnStoreError(row.status());
    if (!row->has_value() || (*row)->state != core::JobState::kPending) continue;
    JobRecord task = **row;
    Status s = Transition(task, core::JobEvent::kDependencyFailed, reason);
    if (!s.ok()) spdlog::error("job {}: {}", id, s.ToString());
  }
  array = jobs_.Find(array_id);  // its last task's end may have finished it (as CANCELLED)
  if (array == nullptr || jobs_.LiveTasks(array_id) > 0) return;
  auto row = store_->GetJob(array_id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) return;
  JobRecord parent = **row;
  Status s = jobs_.FinishArray(parent, core::JobState::kFailed, reason, clock_.WallMs());
  if (!s.ok()) DieOnStoreError(s);
  dirty_ = true;
  spdlog::warn("array {} FAILED: {}", array_id, reason);
}

bool SchedulerService::ArrayTaskOf(Request& req, const JobRecord& array, int64_t index,
                                   JobRecord* task, bool* prospective) {
  if (!array.array.is_object()) {
    ReplyError(req, Status::InvalidArgument("job " + std::to_string(array.id) +
                                            " is not an array: ID_INDEX names a task of an "
                                            "array job (kiln submit --array)"));
    return false;
  }
  auto found = store_->FindArrayTask(array.id, index);
  if (!found.ok()) DieOnStoreError(found.status());
  if (*found) {
    auto row = store_->GetJob(**found);
    if (!row.ok()) DieOnStoreError(row.status());
    if (row->has_value()) {
      *task = **row;
      *prospective = false;
      return true;
    }
  }
  const ActiveJob* a = jobs_.Find(array.id);
  if (a == nullptr || !a->array || !a->array->pending.Contains(index)) {
    ReplyError(req, Status::NotFound("array " + std::to_string(array.id) + " has no task " +
                                     std::to_string(index) +
                                     " (its tasks: " + array.array.value("indices", "") + ")"));
    return false;
  }
  // The row it will have: the array's owner, priority and hold, no attempt yet.
  JobRecord t = array;
  t.array = nlohmann::json();
  t.array_job = array.id;
  t.array_index = index;
  t.state = core::JobState::kPending;
  *task = std::move(t);
  *prospective = true;
  return true;
}

bool SchedulerService::MakeArrayTask(Request& req, JobRecord* task) {
  ActiveJob* a = jobs_.Find(task->array_job);
  std::optional<int64_t> id;
  if (a != nullptr && a->array) id = StartArrayTask(*a, task->array_index);
  if (!id) {
    ReplyError(req,
               Status::FailedPrecondition("task " + TaskName(task->array_job, task->array_index) +
                                          " could not be made (see kiln show " +
                                          std::to_string(task->array_job) + ")"));
    return false;
  }
  auto row = store_->GetJob(*id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) {
    ReplyError(req, Status::NotFound("no job with id " + std::to_string(*id)));
    return false;
  }
  *task = **row;
  return true;
}

void SchedulerService::CancelArray(Request& req, JobRecord& array) {
  ActiveJob* a = jobs_.Find(array.id);
  if (a == nullptr) {
    return ReplyError(
        req, Status::FailedPrecondition("array " + std::to_string(array.id) + " is " +
                                        core::JobStateName(array.state) + "; it has finished"));
  }
  const std::string why = "cancelled by " + req.caller.user;
  const int64_t dropped = jobs_.DropPendingTasks(*a);
  int64_t stopped = 0;
  for (int64_t id : jobs_.TasksOf(array.id)) {
    auto row = store_->GetJob(id);
    if (!row.ok()) DieOnStoreError(row.status());
    if (!row->has_value()) continue;
    JobRecord task = **row;
    const bool was_running = task.state == core::JobState::kRunning;
    if (!Transition(task, core::JobEvent::kCancel, why + " (the whole array)").ok()) continue;
    if (was_running) StopAttempt(task, why);
    ++stopped;
  }
  FinishArrayIfDone(array.id);
  auto row = store_->GetJob(array.id);
  if (!row.ok()) DieOnStoreError(row.status());
  const std::string state =
      row->has_value() ? core::JobStateName((*row)->state) : core::JobStateName(array.state);
  spdlog::info("array {} {}: {} pending tasks dropped, {} tasks cancelled", array.id, why, dropped,
               stopped);
  Audit(req, "cancel", "array " + std::to_string(array.id), Status::Ok(),
        std::to_string(dropped + stopped) + " tasks");
  dirty_ = true;
  Reply(req, protocol::CancelReply{array.id, state});
}

void SchedulerService::AdminArray(Request& req, JobRecord& array,
                                  const protocol::JobAdminRequest& request) {
  ActiveJob* a = jobs_.Find(array.id);
  if (a == nullptr) {
    return ReplyError(
        req, Status::FailedPrecondition("array " + std::to_string(array.id) + " is " +
                                        core::JobStateName(array.state) + "; it has finished"));
  }
  const Millis now = clock_.WallMs();
  std::string what;
  // Applies the change to one row (the array's or a task's) and its view.
  std::function<bool(JobRecord&, ActiveJob&)> apply;
  if (request.action == "hold" || request.action == "release") {
    const bool hold = request.action == "hold";
    if (array.held == hold) {
      ReplyError(req, Status::FailedPrecondition("array " + std::to_string(array.id) +
                                                 " is already " + (hold ? "held" : "not held")));
      return;
    }
    const bool by_admin = hold && req.caller.admin && req.caller.user != array.user;
    what = (hold ? "held by " : "released by ") + req.caller.user + " (the whole array)";
    apply = [hold, by_admin, &req](JobRecord& row, ActiveJob& view) {
      if (row.state != core::JobState::kPending || row.held == hold) return false;
      // A task an admin held stays held when its owner releases the whole array.
      if (!hold && !core::MayRelease(req.caller, row.id, row.user, row.held_by_admin).ok()) {
        return false;
      }
      row.held = view.queued.held = hold;
      row.held_by_admin = by_admin;
      return true;
    };
  } else if (request.action == "priority") {
    if (request.priority < -1000000 || request.priority > 1000000) {
      return ReplyError(req,
                        Status::InvalidArgument("body.priority: must be within -1000000..1000000"));
    }
    what = "priority " + std::to_string(array.priority) + " -> " +
           std::to_string(request.priority) + " by " + req.caller.user + " (the whole array)";
    apply = [this, &request, &req](JobRecord& row, ActiveJob& view) {
      // Tasks whose priority the caller may not set (an admin lowered one) keep theirs.
      if (!core::MayChangePriority(req.caller, row.id, row.user, row.priority, request.priority)
               .ok()) {
        return false;
      }
      row.priority = request.priority;
      jobs_.SetPriority(view, request.priority);
      return true;
    };
  } else {
    return ReplyError(
        req, Status::InvalidArgument("body.action: must be hold, release or priority, got \"" +
                                     request.action + "\""));
  }
  std::vector<int64_t> rows = jobs_.TasksOf(array.id);
  rows.insert(rows.begin(), array.id);
  for (int64_t id : rows) {
    auto found = id == array.id ? Result<std::optional<JobRecord>>(std::optional<JobRecord>(array))
                                : store_->GetJob(id);
    if (!found.ok()) DieOnStoreError(found.status());
    ActiveJob* view = jobs_.Find(id);
    if (!found->has_value() || view == nullptr) continue;
    JobRecord row = **found;
    if (!apply(row, *view)) continue;
    Status saved = store_->UpdateJob(row);
    if (saved.ok()) {
      const std::string state = core::JobStateName(row.state);
      saved = store_->AddEvent({row.id, now, state, state, what});
    }
    if (!saved.ok()) return ReplyError(req, saved);
    if (id == array.id) array = row;
  }
  spdlog::info("array {}: {}", array.id, what);
  Audit(req, request.action, "array " + std::to_string(array.id), Status::Ok(), what);
  dirty_ = true;
  WithLiveReason(array);
  json view = JobSummaryView(array);
  view["array"] = ArrayView(array);
  Reply(req, protocol::DataReply{std::move(view)});
}

json SchedulerService::ArrayView(const JobRecord& row) {
  json view = row.array.is_object() ? row.array : json::object();
  if (const ActiveJob* a = jobs_.Find(row.id); a != nullptr && a->array) {
    view = a->array->ToJson();  // the view is ahead of a row read before this turn's changes
  }
  auto pending = IndexSet::Parse(view.value("pending", ""));
  view["pending_count"] = pending.ok() ? pending->Count() : 0;
  auto states = store_->ArrayTaskStates(row.id);
  if (!states.ok()) DieOnStoreError(states.status());
  view["states"] = *states;
  return view;
}

}  // namespace kiln::service
