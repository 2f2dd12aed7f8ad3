// The bridge between the daemon's state and the pure scheduling policy: builds the policy's view
// of nodes, running jobs, the queue and users, runs a pass, and carries out its plan.
#include <spdlog/spdlog.h>

#include "common/credentials.h"

#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

std::vector<core::NodeState> SchedulerService::NodeStates(std::vector<std::string>* names) {
  std::vector<core::NodeState> nodes;
  nodes.reserve(workers_.size());
  std::map<std::string, int> nodes_at_address;
  for (const auto& [name, w] : workers_) ++nodes_at_address[w.address];
  for (const auto& [name, w] : workers_) {
    core::NodeState n;
    n.name = name;
    n.availability = !w.up                              ? core::NodeAvailability::kDown
                     : w.record.drained || w.leaving ? core::NodeAvailability::kDrained
                                                      : core::NodeAvailability::kUp;
    n.slots = w.record.slots;
    n.memory_bytes = w.record.memory_bytes;
    n.gpus = static_cast<int>(std::min<int64_t>(w.record.gpus, core::kMaxGpusPerNode));
    n.labels = w.policy_labels;
    n.joins_gangs = options_.multi_node && JoinsGangs(w, nodes_at_address);
    const NodeUse use = UseOf(name);
    n.used_slots = use.slots;
    n.used_memory = use.memory;
    n.used_gpu_mask = use.gpu_mask;
    nodes.push_back(std::move(n));
    names->push_back(name);
  }
  return nodes;
}

NodeUse SchedulerService::UseOf(const std::string& node) {
  NodeUse use;
  for (const auto& [key, a] : placements_.On(node)) {
    use.slots += a.slots;
    use.gpus += static_cast<int64_t>(a.gpu_ids.size());
    use.memory += a.memory;
    use.gpu_mask |= core::GpuMask(a.gpu_ids);
    ++use.attempts;
  }
  return use;
}

bool SchedulerService::AnyUsableFreeSlot() {
  for (const auto& [name, w] : workers_) {
    if (w.up && !w.record.drained && w.record.slots > UseOf(name).slots) return true;
  }
  return false;
}

std::vector<core::RunningJob> SchedulerService::RunningJobs(
    const std::unordered_map<std::string, int32_t>& index) {
  std::vector<core::RunningJob> running;
  for (int64_t id : jobs_.running()) {
    const ActiveJob& a = jobs_.At(id);
    core::RunningJob r;
    r.id = id;
    r.user = a.queued.user;
    r.request = a.queued.request;
    r.end_by = a.queued.time_limit_ms > 0 && a.started_at > 0
                   ? a.started_at + a.queued.time_limit_ms
                   : 0;
    for (const auto& [node, share] : a.allocation) {
      auto it = index.find(node);
      if (it == index.end()) continue;
      core::NodeShare s = share;
      s.node = it->second;
      r.shares.push_back(std::move(s));
    }
    running.push_back(std::move(r));
  }
  return running;
}

std::vector<core::UserShare> SchedulerService::UserShares(Millis now) {
  const std::vector<std::string>& names = jobs_.user_names();
  std::vector<core::UserShare> users(names.size());
  for (size_t u = 0; u < users.size(); ++u) {
    users[u].name = names[u];
    users[u].usage = ledger_.Usage(names[u], now);
    if (auto q = quotas_.find(names[u]); q != quotas_.end()) {
      users[u].max_running_ranks = q->second.max_running_ranks;
      users[u].max_gpus = q->second.max_gpus;
    }
    auto w = options_.user_weights.find(names[u]);
    users[u].weight = w != options_.user_weights.end() ? w->second : 1.0;
  }
  for (int64_t id : jobs_.running()) {
    const ActiveJob& a = jobs_.At(id);
    if (a.started_at == 0) continue;
    users[a.queued.user].usage += ledger_.RunningCharge(
        core::UsageRate(a.queued.request, options_.usage_unit), a.started_at, now);
  }
  return users;
}

void SchedulerService::SchedulingPass() {
  const Millis now = clock_.WallMs();
  std::vector<std::string> names;
  std::vector<core::NodeState> nodes = NodeStates(&names);
  up_node_classes_ = core::UpNodeClasses(nodes);  // for submits until the next pass
  std::unordered_map<std::string, int32_t> index;
  for (size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int32_t>(i);
  std::vector<core::RunningJob> running = RunningJobs(index);
  StopTimedOutJobs(running);
  if (jobs_.pending().empty()) {
    capacity_left_ = AnyUsableFreeSlot();
    return;
  }

  core::SchedulingInput in;
  in.nodes = &nodes;
  in.running = &running;
  std::unordered_map<int64_t, core::JobState> dependencies;
  std::vector<std::pair<int64_t, const std::string*>> unplaceable;
  // Arrays with a limit on running tasks (%MAX): how many more may start in this pass.
  std::unordered_map<int64_t, int64_t> array_room;
  auto room_of = [&](int64_t array_id) -> int64_t* {
    const ActiveJob* array = jobs_.Find(array_id);
    if (array == nullptr || !array->array || array->array->max_running <= 0) return nullptr;
    auto [it, inserted] = array_room.try_emplace(array_id, array->array->max_running);
    if (inserted) {
      for (int64_t id : jobs_.running()) {
        if (jobs_.At(id).array_job == array_id) --it->second;
      }
    }
    return &it->second;
  };
  std::vector<ActiveJob*> arrays;  // queued after the tasks that have rows (those go first)
  in.queue.reserve(jobs_.pending().size());
  for (const auto& [key, job] : jobs_.pending()) {
    ActiveJob& a = *job;
    if (!a.unplaceable.empty() && !a.queued.held) {
      unplaceable.push_back({key.second, &a.unplaceable});
      continue;
    }
    if (a.array) {
      arrays.push_back(&a);
      continue;
    }
    if (a.array_job > 0 && !a.queued.held) {
      if (int64_t* room = room_of(a.array_job)) {
        if (*room <= 0) {
          a.reason = ArrayLimitReason(a.array_job);
          a.start_estimate = 0;
          continue;
        }
        --*room;
      }
    }
    in.queue.push_back(&a.queued);
    for (int64_t d : a.queued.depends_on) {
      if (dependencies.count(d)) continue;
      if (auto state = jobs_.StateOf(d)) dependencies[d] = *state;
    }
  }
  for (ActiveJob* a : arrays) {
    a->queued.tasks = a->array->pending.Count();
    if (int64_t* room = room_of(a->queued.id); room != nullptr && !a->queued.held) {
      if (*room <= 0) {
        a->reason = ArrayLimitReason(a->queued.id);
        a->start_estimate = 0;
        continue;
      }
      a->queued.tasks = std::min(a->queued.tasks, *room);
    }
    in.queue.push_back(&a->queued);
    for (int64_t d : a->queued.depends_on) {
      if (dependencies.count(d)) continue;
      if (auto state = jobs_.StateOf(d)) dependencies[d] = *state;
    }
  }
  std::vector<core::UserShare> users = UserShares(now);
  in.users = &users;
  in.dependencies = &dependencies;
  in.now = now;
  in.usage_unit = options_.usage_unit;
  in.commitment_s = ledger_.MeanLifeSeconds();
  in.backfill = options_.backfill;
  core::SchedulingPlan plan = core::PlanPass(in);

  for (const auto& [id, why] : unplaceable) jobs_.At(id).reason = *why;
  int64_t largest_up_node = 0;
  for (const auto& n : nodes) {
    if (n.availability == core::NodeAvailability::kUp) {
      largest_up_node = std::max(largest_up_node, n.slots);
    }
  }
  const std::string isolated = GangHint(nodes);
  for (const auto& w : plan.waits) {
    ActiveJob& a = jobs_.At(w.job_id);
    const std::string& reason = plan.ReasonOf(w);
    if (w.kind == core::WaitKind::kInfeasible && reason.rfind("Account:", 0) == 0) {
      a.reason = AccountWait(a).value_or(reason);  // the user, the account and each node's why
      continue;
    }
    const core::ResourceRequest& r = a.queued.request;
    const bool needs_several = r.Slots() > largest_up_node || (r.spread && r.ranks > 1) ||
                               (r.ranks_per_node > 0 && r.ranks_per_node < r.ranks);
    const bool wide =
        w.kind == core::WaitKind::kResources && !isolated.empty() && needs_several;
    if (wide) {
      a.reason = reason + isolated;
    } else if (a.reason != reason) {
      a.reason = reason;
    }
  }
  for (const auto& [node, here] : placements_.all()) {
    for (const auto& [key, p] : here) {
      ActiveJob* a = jobs_.Find(key.first);
      if (p.job_waits_for_exit && a != nullptr) {
        a->reason = "Waiting: attempt " + std::to_string(key.second) + " is still stopping on " +
                    node +
                    " (saving its checkpoint); the job "
                    "starts again once it has";
      }
    }
  }
  for (const auto& f : plan.failures) {
    if (const ActiveJob* a = jobs_.Find(f.job_id); a != nullptr && a->array) {
      FailArray(f.job_id, f.reason);
      continue;
    }
    auto found = store_->GetJob(f.job_id);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    Status s = Transition(job, core::JobEvent::kDependencyFailed, f.reason);
    if (!s.ok()) spdlog::error("job {}: {}", job.id, s.ToString());
    spdlog::warn("job {} FAILED: {}", job.id, f.reason);
  }
  for (const auto& start : plan.starts) {
    int64_t id = start.job_id;
    if (ActiveJob* a = jobs_.Find(id); a != nullptr && a->array) {
      auto task = StartArrayTask(*a, std::nullopt);  // the array's lowest pending index
      if (!task) continue;
      id = *task;
    }
    auto found = store_->GetJob(id);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    std::vector<std::pair<std::string, core::NodeShare>> shares;
    for (const auto& s : start.shares) shares.push_back({names[s.node], s});
    Launch(job, shares);
  }
  capacity_left_ = AnyUsableFreeSlot();  // what the starts took is in placements_ now
  EstimateStartTimes(plan, now);
}

std::string SchedulerService::ArrayLimitReason(int64_t array_id) {
  const ActiveJob* array = jobs_.Find(array_id);
  const int64_t max = array != nullptr && array->array ? array->array->max_running : 0;
  return "ArrayLimit: " + std::to_string(max) + " of array " + std::to_string(array_id) +
         "'s tasks run at once (%" + std::to_string(max) + "); the next starts when one ends";
}

std::string SchedulerService::GangHint(const std::vector<core::NodeState>& nodes) {
  if (!options_.multi_node) return "";
  std::string names;
  int up = 0;
  for (const auto& n : nodes) {
    if (n.availability != core::NodeAvailability::kUp) continue;
    ++up;
    if (!n.joins_gangs) names += (names.empty() ? "" : ", ") + n.name;
  }
  if (names.empty() || up < 2) return "";  // one node: no gang could span nodes anyway
  return "; " + names + " can take only gangs that fit on them whole (no address the other "
         "nodes can reach: start kiln-worker with --address, or the scheduler with "
         "--single-node-gangs)";
}

bool SchedulerService::JoinsGangs(const Worker& w,
                                  const std::map<std::string, int>& nodes_at_address) {
  return !w.launch_endpoint.empty() && !w.address.empty() && w.address.rfind("127.", 0) != 0 &&
         nodes_at_address.at(w.address) == 1;
}

void SchedulerService::Launch(JobRecord& job,
                              const std::vector<std::pair<std::string, core::NodeShare>>& shares) {
  if (shares.empty()) return;
  const core::ResourceRequest& request = jobs_.At(job.id).queued.request;
  job.attempt += 1;
  job.node = shares.front().first;
  job.allocation = nlohmann::json::array();
  std::string where;
  for (const auto& [node, share] : shares) {
    job.allocation.push_back({{"node", node}, {"ranks", share.ranks}, {"gpu_ids", share.gpu_ids}});
    where += (where.empty() ? "" : ", ") + node + (shares.size() > 1 ? "×" + std::to_string(share.ranks) : "");
  }
  Status s = Transition(job, core::JobEvent::kPlaced,
                        "placed on " + where + " (attempt " + std::to_string(job.attempt) + ")");
  if (!s.ok()) {
    spdlog::error("job {}: cannot start: {}", job.id, s.ToString());
    return;
  }
  jobs_.At(job.id).allocation = shares;

  // Resume from this job's latest checkpoint, or else from the one it was submitted to continue.
  auto own = store_->FindCheckpoint(job.id, -1);
  std::optional<CheckpointRecord> from;
  if (own.ok() && own->has_value()) {
    from = **own;
  } else if (job.resume_job > 0) {
    auto other = store_->FindCheckpoint(job.resume_job, job.resume_step);
    if (other.ok() && other->has_value()) from = **other;
  }
  // A gang on several nodes: the first node leads (runs mpirun and rank 0); every node gets the
  // list, and a secret the leader's kiln-rsh shows the others' agents.
  std::vector<protocol::LaunchHost> hosts;
  std::string secret;
  if (shares.size() > 1) {
    secret = NewAccessToken();
    for (const auto& [node, share] : shares) {
      const Worker& w = workers_.at(node);
      hosts.push_back({node, w.address, share.ranks, w.launch_endpoint, w.public_key});
    }
  }
  Status recorded = store_->AddAttempt({job.id, job.attempt, job.allocation, job.started_at, 0,
                                        "RUNNING", -1, "", from ? from->step : -1});
  if (!recorded.ok()) spdlog::error("job {}: cannot record attempt: {}", job.id, recorded.ToString());
  for (const auto& [node, share] : shares) {
    Placement placement;
    placement.ranks = share.ranks;
    placement.slots = share.ranks * std::max<int64_t>(1, request.cpus_per_rank);
    placement.memory = share.ranks * request.memory_per_rank;
    placement.gpu_ids = share.gpu_ids;
    placement.launched_at = clock_.MonotonicMs();
    protocol::LaunchJob launch{job.id, job.attempt, job.spec, share.ranks, -1, 0, "", "",
                               {}, {}, ""};
    const UserAccount account = AccountOf(job.user);
    launch.run_as = account.unix_user;
    launch.allow_root = account.allow_root;
    for (int g : share.gpu_ids) launch.gpu_ids.push_back(g);
    launch.hosts = hosts;
    launch.launch_secret = secret;
    if (job.array_job > 0) {
      launch.array_job = job.array_job;
      launch.array_index = job.array_index;
    }
    if (from) {
      launch.resume_job = from->job_id;
      launch.resume_step = from->step;
      launch.resume_sha256 = from->sha256;
      launch.resume_path = from->path;
      placement.resume = {from->job_id, from->step};
    }
    if (const auto serve = job.spec.find("serve"); serve != job.spec.end() && serve->is_object()) {
      if (const ServiceRecord* s = services_.Find(serve->value("service", ""))) {
        launch.serve_tokens = ServeTokensOf(*s);
        serve_tokens_sent_[job.id] = {job.attempt, *launch.serve_tokens};
      }
    }
    placement.launch = launch;
    placement.launch_sent_at = placement.launched_at;
    placement.launch_sends = 1;
    Status placed = placements_.Put(node, {job.id, job.attempt}, placement);
    if (!placed.ok()) DieOnStoreError(placed);
    spdlog::info("job {} attempt {} -> {} ({} ranks{}{})", job.id, job.attempt, node, share.ranks,
                 share.gpu_ids.empty() ? "" : ", GPUs " + nlohmann::json(share.gpu_ids).dump(),
                 launch.resume_step >= 0 ? ", resuming at step " + std::to_string(launch.resume_step)
                                         : "");
    Send(workers_.at(node).peer, launch);
  }
}

}  // namespace kiln::service
