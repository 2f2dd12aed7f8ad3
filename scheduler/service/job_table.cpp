#include "scheduler/service/job_table.h"

#include <algorithm>

namespace kiln::service {

namespace {

core::ResourceRequest RequestOf(const JobSpec& spec) {
  core::ResourceRequest r;
  const ResourceSpec& res = spec.resources;
  r.ranks = res.ranks;
  r.cpus_per_rank = res.cpus_per_rank;
  r.gpus_per_rank = res.gpus_per_rank;
  r.memory_per_rank = res.memory_per_rank;
  r.ranks_per_node = res.ranks_per_node;
  r.spread = res.placement == "spread";
  r.labels = res.labels;
  return r;
}

// Replaces the account label among a request's (sorted) labels.
void SetAccountLabel(core::ResourceRequest& r, const std::string& label) {
  r.labels.erase(std::remove_if(r.labels.begin(), r.labels.end(), core::IsInternalLabel),
                 r.labels.end());
  r.labels.insert(std::lower_bound(r.labels.begin(), r.labels.end(), label), label);
}

}  // namespace

nlohmann::json ArrayState::ToJson() const {
  nlohmann::json j = {{"indices", indices},
                      {"tasks", tasks},
                      {"max_running", max_running},
                      {"pending", pending.ToString()},
                      {"cancelled", cancelled}};
  if (sweep) {
    j["sweep"] = sweep_doc;
    j["sweep_state"] = sweep_state.ToJson();
  }
  return j;
}

nlohmann::json ArrayState::TrialSpec(const nlohmann::json& base, int64_t index) const {
  nlohmann::json spec = sweep ? core::ApplyParams(base, core::TrialParams(*sweep, index)) : base;
  return SubstituteArrayIndex(spec, index);
}

ArrayState ArrayState::FromJson(const nlohmann::json& j) {
  ArrayState a;
  if (!j.is_object()) return a;
  a.indices = j.value("indices", "");
  a.tasks = j.value("tasks", int64_t{0});
  a.max_running = j.value("max_running", int64_t{0});
  a.cancelled = j.value("cancelled", int64_t{0});
  const std::string pending = j.value("pending", "");
  if (!pending.empty()) {
    auto set = IndexSet::Parse(pending);
    if (set.ok()) a.pending = std::move(*set);
  }
  if (j.contains("sweep") && j["sweep"].is_object()) {
    a.sweep_doc = j["sweep"];
    nlohmann::json doc = a.sweep_doc;
    doc["base"] = nlohmann::json::object();  // trials' specs come from the row's
    core::SweepParseResult parsed = core::ParseSweepSpec(doc);
    if (parsed.ok()) a.sweep = std::move(parsed.spec);
    a.sweep_state = core::SweepState::FromJson(j.value("sweep_state", nlohmann::json()));
  }
  return a;
}

SpecParseResult ParseTaskSpecOf(const JobRecord& row) {
  if (!row.array.is_object()) return ParseJobSpec(row.spec);
  const ArrayState array = ArrayState::FromJson(row.array);
  auto indices = IndexSet::Parse(array.indices);
  const int64_t first = indices.ok() && !indices->empty() ? *indices->First() : 0;
  return ParseJobSpec(array.TrialSpec(row.spec, first));
}

std::vector<std::string> ArrayState::TaskSpecErrors(int64_t index,
                                                    const std::vector<SpecError>& errors) const {
  std::vector<std::string> out;
  for (const auto& e : SpecErrorStrings(errors)) {
    bool in_space = false;  // a sweep's parameter that the spec refuses is the space's
    if (sweep) {
      for (const auto& p : sweep->space) in_space = in_space || e.rfind(p.path, 0) == 0;
    }
    out.push_back(in_space ? "space." + e
                           : (sweep ? "trial " : "task ") + std::to_string(index) + ": " + e);
  }
  return out;
}

int64_t JobTable::PendingWeight(const ActiveJob& a) {
  return a.array ? a.array->pending.Count() : 1;
}

std::string JobTable::AccountLabelOf(const std::string& user) const {
  auto it = account_labels_.find(user);
  // A user no longer in the database: a label no node carries (the job waits, never runs as an
  // account of the same name that may be someone else's).
  return it != account_labels_.end() ? it->second : "unix-none:" + user;
}

bool JobTable::SetAccountLabels(std::unordered_map<std::string, std::string> labels) {
  if (labels == account_labels_) return false;
  account_labels_ = std::move(labels);
  bool changed = false;
  for (auto& [id, a] : active_) {
    const std::string label = AccountLabelOf(user_names_[a.queued.user]);
    const auto& l = a.queued.request.labels;
    if (std::find(l.begin(), l.end(), label) != l.end()) continue;
    SetAccountLabel(a.queued.request, label);
    changed = true;
  }
  return changed;
}

void JobTable::Clear() {
  active_.clear();
  pending_.clear();
  running_.clear();
  finished_states_.clear();
  live_tasks_.clear();
  pending_by_user_.assign(pending_by_user_.size(), 0);
}

int64_t JobTable::PendingOf(const std::string& user) const {
  auto u = user_index_.find(user);
  if (u == user_index_.end() || static_cast<size_t>(u->second) >= pending_by_user_.size()) return 0;
  return pending_by_user_[u->second];
}

int32_t JobTable::UserIndex(const std::string& user) {
  auto [it, inserted] = user_index_.try_emplace(user, static_cast<int32_t>(user_names_.size()));
  if (inserted) {
    user_names_.push_back(user);
    pending_by_user_.push_back(0);
  }
  return it->second;
}

ActiveJob& JobTable::Track(const JobRecord& job, const JobSpec& spec) {
  ActiveJob a;
  a.queued.id = job.id;
  a.queued.user = UserIndex(job.user);
  a.queued.priority = job.priority;
  a.queued.request = RequestOf(spec);
  SetAccountLabel(a.queued.request, AccountLabelOf(job.user));
  a.queued.time_limit_ms = job.time_limit_ms;
  a.queued.held = job.held;
  a.queued.depends_on = job.depends_on;
  a.state = job.state;
  a.attempt = job.attempt;
  a.reason = job.reason;
  if (job.array.is_object()) a.array = ArrayState::FromJson(job.array);
  a.array_job = job.array_job;
  a.array_index = job.array_index;
  a.train_epochs = spec.train.epochs;
  if (spec.serve) {
    a.service = spec.serve->service;
    a.model = {spec.serve->model_job, spec.serve->model_step};
  }
  if (!multi_node_) {
    core::ResourceRequest& r = a.queued.request;
    const bool needs_several =
        (r.ranks_per_node > 0 && r.ranks_per_node < r.ranks) || (r.spread && r.ranks > 1);
    if (needs_several) {
      a.unplaceable = "Infeasible: asks for ranks on several nodes (" +
                      std::string(r.spread ? "placement \"spread\"" : "ranks_per_node") +
                      "), and this scheduler runs with --multi-node off";
    }
    r.ranks_per_node = r.ranks;
    r.spread = false;
  }
  if (job.state == core::JobState::kRunning) {
    a.started_at = job.started_at;
    for (const auto& entry : job.allocation) {
      core::NodeShare share;
      share.ranks = entry.value("ranks", int64_t{0});
      for (const auto& g : entry.value("gpu_ids", nlohmann::json::array())) {
        if (g.is_number_integer()) share.gpu_ids.push_back(g.get<int>());
      }
      a.allocation.push_back({entry.value("node", ""), share});
    }
    if (a.allocation.empty() && !job.node.empty()) {  // a database from before allocations
      a.allocation.push_back({job.node, core::NodeShare{0, job.ranks, {}}});
    }
  }
  ActiveJob& tracked = active_[job.id] = std::move(a);
  if (job.state == core::JobState::kRunning) running_.insert(job.id);
  if (job.state == core::JobState::kPending && PendingWeight(tracked) > 0) {
    pending_[{-job.priority, job.id}] = &tracked;
    pending_by_user_[tracked.queued.user] += PendingWeight(tracked);
  }
  if (tracked.array_job > 0) ++live_tasks_[tracked.array_job];
  return tracked;
}

Result<std::optional<JobTable::EndedAttempt>> JobTable::Transition(JobRecord& job,
                                                                   core::JobEvent event,
                                                                   const std::string& reason,
                                                                   Millis now) {
  auto next = core::NextState(job.state, event, job.attempt - job.requeues, job.max_retries);
  if (!next.ok()) return next.status();
  const core::JobState from = job.state;
  job.state = *next;
  job.reason = reason;
  if (job.state == core::JobState::kRunning) job.started_at = now;
  if (core::IsTerminal(job.state)) job.finished_at = now;
  KILN_RETURN_IF_ERROR(store_.UpdateJob(job));
  KILN_RETURN_IF_ERROR(store_.AddEvent(
      {job.id, now, core::JobStateName(from), core::JobStateName(job.state), reason}));
  if (from == core::JobState::kRunning) {
    // A failed attempt sends the job back to PENDING (a retry) or on to FAILED: either way the
    // attempt itself FAILED.
    const std::string outcome = event == core::JobEvent::kRequeued ? "REQUEUED"
                                : job.state == core::JobState::kPending
                                    ? "FAILED"
                                    : core::JobStateName(job.state);
    KILN_RETURN_IF_ERROR(store_.EndAttempt(job.id, job.attempt, now, outcome, reason));
  }

  std::optional<EndedAttempt> ended;
  auto active = active_.find(job.id);
  if (active == active_.end()) return ended;
  ActiveJob& a = active->second;
  if (from == core::JobState::kRunning && a.started_at > 0) {
    ended = EndedAttempt{user_names_[a.queued.user], a.queued.request, a.started_at};
  }
  if (from == core::JobState::kPending && pending_.erase({-a.queued.priority, job.id}) > 0) {
    pending_by_user_[a.queued.user] -= PendingWeight(a);
  }
  if (from == core::JobState::kRunning) running_.erase(job.id);
  a.state = job.state;
  a.reason = reason;
  if (core::IsTerminal(job.state)) {
    finished_states_[job.id] = job.state;
    if (a.array_job > 0) --live_tasks_[a.array_job];
    active_.erase(active);
  } else if (job.state == core::JobState::kPending) {
    a.allocation.clear();
    a.started_at = 0;
    pending_[{-a.queued.priority, job.id}] = &a;
    ++pending_by_user_[a.queued.user];
  } else if (job.state == core::JobState::kRunning) {
    running_.insert(job.id);
    a.attempt = job.attempt;
    a.started_at = now;
    a.first_step = -1;  // a new attempt's progress
    a.step = a.total_steps = 0;
    a.start_estimate = 0;
  }
  return ended;
}

void JobTable::SetPriority(ActiveJob& job, int64_t priority) {
  if (job.state == core::JobState::kPending &&
      pending_.erase({-job.queued.priority, job.queued.id}) > 0) {
    pending_[{-priority, job.queued.id}] = &job;
  }
  job.queued.priority = priority;
}

std::optional<int64_t> JobTable::TakeArrayTask(ActiveJob& array, std::optional<int64_t> index) {
  if (!array.array || array.array->pending.empty()) return std::nullopt;
  IndexSet& pending = array.array->pending;
  if (index) {
    if (!pending.Remove(*index)) return std::nullopt;
  } else {
    index = pending.TakeFirst();
  }
  --pending_by_user_[array.queued.user];
  if (pending.empty()) pending_.erase({-array.queued.priority, array.queued.id});
  return index;
}

int64_t JobTable::DropPendingTasks(ActiveJob& array) {
  if (!array.array) return 0;
  const int64_t n = array.array->pending.Count();
  if (n > 0 && pending_.erase({-array.queued.priority, array.queued.id}) > 0) {
    pending_by_user_[array.queued.user] -= n;
  }
  array.array->pending = IndexSet();
  array.array->cancelled += n;
  return n;
}

int64_t JobTable::LiveTasks(int64_t array_job) const {
  auto it = live_tasks_.find(array_job);
  return it == live_tasks_.end() ? 0 : it->second;
}

bool JobTable::ArrayDone(const ActiveJob& array) const {
  return array.array && array.array->pending.empty() && LiveTasks(array.queued.id) == 0;
}

Status JobTable::FinishArray(JobRecord& row, core::JobState state, const std::string& reason,
                             Millis now) {
  const core::JobState from = row.state;
  row.state = state;
  row.reason = reason;
  row.finished_at = now;
  if (auto a = active_.find(row.id); a != active_.end() && a->second.array) {
    row.array = a->second.array->ToJson();
  }
  KILN_RETURN_IF_ERROR(store_.UpdateJob(row));
  KILN_RETURN_IF_ERROR(
      store_.AddEvent({row.id, now, core::JobStateName(from), core::JobStateName(state), reason}));
  if (auto a = active_.find(row.id); a != active_.end()) {
    if (pending_.erase({-a->second.queued.priority, row.id}) > 0) {
      pending_by_user_[a->second.queued.user] -= PendingWeight(a->second);
    }
    active_.erase(a);
  }
  live_tasks_.erase(row.id);
  finished_states_[row.id] = state;
  return Status::Ok();
}

std::vector<int64_t> JobTable::TasksOf(int64_t array_job) const {
  std::vector<int64_t> ids;
  if (LiveTasks(array_job) == 0) return ids;
  for (const auto& [id, a] : active_) {
    if (a.array_job == array_job) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

ActiveJob* JobTable::Find(int64_t id) {
  auto a = active_.find(id);
  return a == active_.end() ? nullptr : &a->second;
}

const ActiveJob* JobTable::Find(int64_t id) const {
  auto a = active_.find(id);
  return a == active_.end() ? nullptr : &a->second;
}

ActiveJob& JobTable::At(int64_t id) { return active_.at(id); }

std::optional<core::JobState> JobTable::StateOf(int64_t id) {
  if (const ActiveJob* a = Find(id)) return a->state;
  auto f = finished_states_.find(id);
  if (f != finished_states_.end()) return f->second;
  auto found = store_.GetJob(id);
  if (!found.ok() || !found->has_value()) return std::nullopt;
  if (core::IsTerminal((*found)->state)) finished_states_[id] = (*found)->state;
  return (*found)->state;
}

}  // namespace kiln::service
