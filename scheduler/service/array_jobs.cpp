// Job arrays: one row and one queue entry for all of an array's pending tasks; a task gets a row
// of its own when it starts (or is cancelled, held or reprioritised by its index), and from then
// on is an ordinary job that knows its array. The array's row ends when its last task has.
#include <spdlog/spdlog.h>

#include "common/job_array.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

SpecParseResult SchedulerService::ParseArraySpecOf(const JobRecord& row) {
  if (!row.array.is_object()) return ParseJobSpec(row.spec);
  auto indices = IndexSet::Parse(row.array.value("indices", ""));
  const int64_t first = indices.ok() && !indices->empty() ? *indices->First() : 0;
  return ParseJobSpec(SubstituteArrayIndex(row.spec, first));
}

bool SchedulerService::PrepareArray(Request& req, const std::string& text, JobRecord& job) {
  auto spec = ParseArraySpec(text);
  if (!spec.ok()) {
    ReplyError(req, Status::InvalidArgument("job array rejected: 1 error(s)"),
               {spec.status().message()});
    return false;
  }
  // Tasks differ only in the index's digits: the first and the last stand for them all.
  std::vector<std::string> errors;
  const int64_t first = *spec->indices.First();
  const int64_t last = spec->indices.runs().back().last;
  for (int64_t index : {first, last}) {
    SpecParseResult parsed = ParseJobSpec(SubstituteArrayIndex(job.spec, index));
    for (const auto& e : SpecErrorStrings(parsed.errors)) {
      errors.push_back("task " + std::to_string(index) + ": " + e);
    }
    if (first == last) break;
  }
  if (!errors.empty()) {
    ReplyError(req,
               Status::InvalidArgument("job spec rejected: " + std::to_string(errors.size()) +
                                       " error(s)"),
               errors);
    return false;
  }
  ArrayState state;
  state.indices = spec->indices.ToString();
  state.tasks = spec->indices.Count();
  state.max_running = spec->max_running;
  state.pending = spec->indices;
  job.array = state.ToJson();
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
  task.spec = SubstituteArrayIndex(parent.spec, *taken);
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
  ArrayTally tally{count("COMPLETED"), count("FAILED"),
                   count("CANCELLED") + array->array->cancelled};
  auto row = store_->GetJob(array_id);
  if (!row.ok()) DieOnStoreError(row.status());
  if (!row->has_value()) return;
  JobRecord parent = **row;
  const core::JobState final = *core::ParseJobState(ArrayFinalState(tally));
  Status s = jobs_.FinishArray(parent, final, "array: " + DescribeTally(tally), clock_.WallMs());
  if (!s.ok()) DieOnStoreError(s);
  dirty_ = true;
  spdlog::info("array {} {}: {}", array_id, core::JobStateName(final), DescribeTally(tally));
}

bool SchedulerService::ResolveArrayTask(Request& req, const JobRecord& array, int64_t index,
                                        bool make, JobRecord* task) {
  if (!array.array.is_object()) {
    ReplyError(req, Status::InvalidArgument("job " + std::to_string(array.id) +
                                            " is not an array: ID_INDEX names a task of an "
                                            "array job (kiln submit --array)"));
    return false;
  }
  auto found = store_->FindArrayTask(array.id, index);
  if (!found.ok()) DieOnStoreError(found.status());
  std::optional<int64_t> id = *found;
  if (!id) {
    ActiveJob* a = jobs_.Find(array.id);
    const bool pending = a != nullptr && a->array && a->array->pending.Contains(index);
    if (!pending) {
      ReplyError(req, Status::NotFound("array " + std::to_string(array.id) + " has no task " +
                                       std::to_string(index) +
                                       " (its tasks: " + array.array.value("indices", "") + ")"));
      return false;
    }
    if (!make) {
      ReplyError(req, Status::NotFound("task " + TaskName(array.id, index) +
                                       " has not started yet: it is PENDING in array " +
                                       std::to_string(array.id) + " (kiln show " +
                                       std::to_string(array.id) + ")"));
      return false;
    }
    id = StartArrayTask(*a, index);
    if (!id) {
      ReplyError(req, Status::FailedPrecondition("task " + TaskName(array.id, index) +
                                                 " could not be made (see kiln show " +
                                                 std::to_string(array.id) + ")"));
      return false;
    }
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
    apply = [hold, by_admin](JobRecord& row, ActiveJob& view) {
      if (row.state != core::JobState::kPending || row.held == hold) return false;
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
    apply = [this, &request](JobRecord& row, ActiveJob& view) {
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
