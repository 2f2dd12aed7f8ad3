#include "scheduler/core/scheduling_policy.h"

#include <algorithm>
#include <ctime>
#include <limits>
#include <queue>

namespace kiln::core {

namespace {

constexpr uint32_t kNoReason = std::numeric_limits<uint32_t>::max();

std::string WallClock(Millis wall_ms) {
  std::time_t seconds = static_cast<std::time_t>(wall_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// What the pass remembers about one request shape. A failed placement stays failed for the rest
// of the pass: free resources, and what the reservation leaves to backfill, only shrink within a
// pass, and Place finds a placement whenever one exists.
struct ShapeMemo {
  bool infeasible_checked = false;
  uint32_t infeasible = kNoReason;
  bool failed_now = false;   // Place on all free resources failed
  bool failed_held = false;  // Place outside the reservation failed
  uint32_t resources_reason = kNoReason;
  uint32_t reserved_reason[2] = {kNoReason, kNoReason};  // [has time limit]
};

class Pass {
 public:
  explicit Pass(const SchedulingInput& in) : in_(in), free_(*in.nodes) {}

  SchedulingPlan Run() {
    for (const auto& n : *in_.nodes) {
      any_up_ = any_up_ || n.availability == NodeAvailability::kUp;
      any_drained_ = any_drained_ || n.availability == NodeAvailability::kDrained;
    }
    const size_t users = in_.users != nullptr ? in_.users->size() : 0;
    key_.assign(users + 1, 0.0);
    weight_.assign(users + 1, 1.0);
    for (size_t u = 0; u < users; ++u) {
      weight_[u] = std::max(1e-9, (*in_.users)[u].weight);
      key_[u] = (*in_.users)[u].usage / weight_[u];
    }
    user_queues_.resize(users + 1);
    running_ranks_.assign(users + 1, 0);
    running_gpus_.assign(users + 1, 0);
    if (in_.running != nullptr) {
      for (const auto& r : *in_.running) {
        const int32_t u = UserIndexOf(r.user);
        running_ranks_[u] += r.request.ranks;
        running_gpus_[u] += r.request.ranks * r.request.gpus_per_rank;
      }
    }

    std::vector<const QueuedJob*> queue = in_.queue;
    auto before = [](const QueuedJob* a, const QueuedJob* b) {
      return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
    };
    if (!std::is_sorted(queue.begin(), queue.end(), before)) {
      std::sort(queue.begin(), queue.end(), before);
    }
    for (size_t i = 0; i < queue.size();) {
      size_t end = i;
      while (end < queue.size() && queue[end]->priority == queue[i]->priority) ++end;
      RunLevel(queue, i, end);
      i = end;
    }
    return std::move(plan_);
  }

 private:
  int32_t UserIndexOf(int32_t user) const {
    return user >= 0 && static_cast<size_t>(user) + 1 < key_.size()
               ? user
               : static_cast<int32_t>(key_.size() - 1);
  }
  int32_t UserOf(const QueuedJob& j) const { return UserIndexOf(j.user); }

  // Waits the job when starting it would take its user past a quota.
  bool OverQuota(const QueuedJob& j) {
    const int32_t u = UserOf(j);
    if (in_.users == nullptr || static_cast<size_t>(u) >= in_.users->size()) return false;
    const UserShare& user = (*in_.users)[u];
    const int64_t gpus = j.request.ranks * j.request.gpus_per_rank;
    std::string why;
    if (user.max_running_ranks > 0 &&
        running_ranks_[u] + j.request.ranks > user.max_running_ranks) {
      why = "Quota: user " + user.name + " runs " + std::to_string(running_ranks_[u]) + " of " +
            std::to_string(user.max_running_ranks) + " ranks allowed; this job needs " +
            std::to_string(j.request.ranks) + " more";
    } else if (user.max_gpus > 0 && gpus > 0 && running_gpus_[u] + gpus > user.max_gpus) {
      why = "Quota: user " + user.name + " runs " + std::to_string(running_gpus_[u]) + " of " +
            std::to_string(user.max_gpus) + " GPUs allowed; this job needs " +
            std::to_string(gpus) + " more";
    } else {
      return false;
    }
    Wait(j, WaitKind::kQuota, Reason(std::move(why)));
    return true;
  }
  const std::string& UserName(int32_t u) const {
    static const std::string kUnknown = "(unknown)";
    return in_.users != nullptr && static_cast<size_t>(u) < in_.users->size()
               ? (*in_.users)[u].name
               : kUnknown;
  }

  uint32_t Reason(std::string text) {
    auto [it, inserted] = reason_ids_.try_emplace(std::move(text), plan_.reasons.size());
    if (inserted) plan_.reasons.push_back(it->first);
    return it->second;
  }
  void Wait(const QueuedJob& j, WaitKind kind, uint32_t reason) {
    plan_.waits.push_back({j.id, kind, reason});
  }

  // Held, dependencies, no workers, infeasible: jobs that cannot take part in this pass.
  // Sets *memo to the job's shape memo when it checked one (every job that reaches the shape).
  bool Eligible(const QueuedJob& j, ShapeMemo** memo) {
    if (j.held) {
      Wait(j, WaitKind::kHeld, Reason("Held: `kiln release " + std::to_string(j.id) +
                                      "` lets it be scheduled"));
      return false;
    }
    for (int64_t d : j.depends_on) {
      std::optional<JobState> state;
      if (in_.dependencies != nullptr) {
        auto it = in_.dependencies->find(d);
        if (it != in_.dependencies->end()) state = it->second;
      }
      if (state == JobState::kCompleted) continue;
      if (!state || *state == JobState::kFailed || *state == JobState::kCancelled) {
        plan_.failures.push_back(
            {j.id, "DependencyFailed: job " + std::to_string(d) +
                       (state ? std::string(" ended ") + JobStateName(*state) : " does not exist") +
                       ", so this job can never run"});
        return false;
      }
      Wait(j, WaitKind::kDependency,
           Reason("Dependency: waiting for job " + std::to_string(d) + " to complete (it is " +
                  JobStateName(*state) + ")"));
      return false;
    }
    if (!any_up_) {
      Wait(j, WaitKind::kNoWorkers,
           Reason(any_drained_ ? "Waiting: every up node is drained (kiln node resume NAME)"
                               : "Waiting: no worker is up"));
      return false;
    }
    ShapeMemo& m = memo_[j.request];
    *memo = &m;
    if (!m.infeasible_checked) {
      m.infeasible_checked = true;
      if (!classes_built_) {
        up_classes_ = UpNodeClasses(*in_.nodes);
        classes_built_ = true;
      }
      auto why = InfeasibleReason(up_classes_, j.request);
      if (why) m.infeasible = Reason(*why);
    }
    if (m.infeasible != kNoReason) {
      Wait(j, WaitKind::kInfeasible, m.infeasible);
      return false;
    }
    return true;
  }

  void RunLevel(const std::vector<const QueuedJob*>& queue, size_t begin, size_t end) {
    std::vector<int32_t> touched;
    for (size_t i = begin; i < end; ++i) {
      const QueuedJob& j = *queue[i];
      ShapeMemo* memo = nullptr;
      if (!Eligible(j, &memo)) continue;
      auto& q = user_queues_[UserOf(j)];
      if (q.empty()) touched.push_back(UserOf(j));
      q.push_back({&j, memo});
    }
    // Min-heap of (usage per weight, next job id, user): the most deserving user goes next.
    using Entry = std::tuple<double, int64_t, int32_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    std::vector<size_t> next(key_.size(), 0);
    for (int32_t u : touched) heap.push({key_[u], user_queues_[u][0].first->id, u});
    std::vector<int64_t> started(key_.size(), 0);  // tasks of the user's current entry started
    while (!heap.empty()) {
      const int32_t u = std::get<2>(heap.top());
      heap.pop();
      const auto& q = user_queues_[u];
      const auto& [job, memo] = q[next[u]];
      const size_t starts_before = plan_.starts.size();
      Try(*job, *memo);
      // An array that started a task offers its next one, as the user's next job would be.
      if (plan_.starts.size() > starts_before && ++started[u] < job->tasks) {
        heap.push({key_[u], job->id, u});
        continue;
      }
      started[u] = 0;
      ++next[u];
      if (next[u] < q.size()) heap.push({key_[u], q[next[u]].first->id, u});
    }
    for (int32_t u : touched) user_queues_[u].clear();
  }

  void Try(const QueuedJob& j, ShapeMemo& m) {
    if (OverQuota(j)) return;
    if (holder_ == nullptr) {
      if (!m.failed_now) {
        if (auto shares = free_.Place(j.request)) return Start(j, std::move(*shares), false);
        m.failed_now = true;
      }
      MakeReservation(j);
      return;
    }
    if (in_.backfill) {
      const Reservation& r = *plan_.reservation;
      const bool ends_before = r.start_at >= 0 && j.time_limit_ms > 0 &&
                               in_.now + j.time_limit_ms <= r.start_at;
      if (ends_before) {
        if (!m.failed_now) {
          if (auto shares = free_.Place(j.request)) return Start(j, std::move(*shares), true);
          m.failed_now = true;
        }
      } else {
        if (!m.failed_held) {
          if (auto shares = free_.Place(j.request, &holdback_)) {
            return Start(j, std::move(*shares), true);
          }
          m.failed_held = true;
        }
        // It would fit if the reservation did not hold resources back: say so.
        if (!m.failed_now) {
          if (free_.Place(j.request)) {
            uint32_t& reason = m.reserved_reason[j.time_limit_ms > 0 ? 1 : 0];
            if (reason == kNoReason) {
              reason = Reason(
                  "Reserved: fits now, but would delay job " + std::to_string(holder_->id) +
                  ", which has resources reserved" +
                  (j.time_limit_ms > 0 ? std::string("") :
                                         "; a time_limit ending before its start would let it "
                                         "backfill"));
            }
            return Wait(j, WaitKind::kReserved, reason);
          }
          m.failed_now = true;
        }
      }
    }
    WaitBehindHolder(j, m);
  }

  void WaitBehindHolder(const QueuedJob& j, ShapeMemo& m) {
    if (holder_->priority > j.priority) {
      if (priority_reason_ == kNoReason) {
        priority_reason_ = Reason("Priority: behind job " + std::to_string(holder_->id) +
                                  " (priority " + std::to_string(holder_->priority) +
                                  "), which waits for resources");
      }
      return Wait(j, WaitKind::kPriority, priority_reason_);
    }
    if (UserOf(*holder_) != UserOf(j) && key_[UserOf(*holder_)] < key_[UserOf(j)]) {
      if (fair_share_reason_ == kNoReason) {
        fair_share_reason_ = Reason("FairShare: behind job " + std::to_string(holder_->id) +
                                    " of user " + UserName(UserOf(*holder_)) +
                                    ", who has used less of the cluster");
      }
      return Wait(j, WaitKind::kFairShare, fair_share_reason_);
    }
    if (m.resources_reason == kNoReason) {
      m.resources_reason = Reason("Resources: needs " + DescribeNeed(j.request) +
                                  "; waits behind job " + std::to_string(holder_->id));
    }
    Wait(j, WaitKind::kResources, m.resources_reason);
  }

  void Start(const QueuedJob& j, std::vector<NodeShare> shares, bool backfilled) {
    free_.Take(shares, j.request);
    const bool ends_before = plan_.reservation && plan_.reservation->start_at >= 0 &&
                             j.time_limit_ms > 0 &&
                             in_.now + j.time_limit_ms <= plan_.reservation->start_at;
    if (plan_.reservation) {
      for (const auto& s : shares) {
        if (!reserved_[s.node]) continue;
        if (!ends_before) {  // still running at the reserved start: it uses up slack there
          slack_[s.node].slots -= s.ranks * std::max<int64_t>(1, j.request.cpus_per_rank);
          slack_[s.node].gpus -= s.ranks * j.request.gpus_per_rank;
          slack_[s.node].memory -= s.ranks * j.request.memory_per_rank;
        }
        UpdateHoldback(s.node);
      }
    } else if (j.time_limit_ms > 0) {
      started_bounded_.push_back(plan_.starts.size());
    }
    const int32_t u = UserOf(j);
    key_[u] += UsageRate(j.request, in_.usage_unit) * in_.commitment_s / weight_[u];
    running_ranks_[u] += j.request.ranks;
    running_gpus_[u] += j.request.ranks * j.request.gpus_per_rank;
    plan_.starts.push_back({j.id, std::move(shares), backfilled});
    start_limits_.push_back(j.time_limit_ms);
    start_requests_.push_back(&j.request);
  }

  void UpdateHoldback(int32_t n) {
    const Amount f = free_.Free(n);
    if (plan_.reservation->start_at < 0) {
      holdback_[n] = f;
      return;
    }
    holdback_[n] = {std::max<int64_t>(0, f.slots - slack_[n].slots),
                    std::max<int64_t>(0, f.gpus - slack_[n].gpus),
                    std::max<int64_t>(0, f.memory - slack_[n].memory)};
  }

  // The earliest time `j` fits if running jobs end at their time limits, and where.
  void MakeReservation(const QueuedJob& j) {
    holder_ = &j;
    struct Release {
      Millis at;
      const std::vector<NodeShare>* shares;
      const ResourceRequest* request;
    };
    std::vector<Release> releases;
    for (const auto& r : *in_.running) {
      if (r.end_by > 0) releases.push_back({std::max(r.end_by, in_.now), &r.shares, &r.request});
    }
    for (size_t i : started_bounded_) {
      releases.push_back(
          {in_.now + start_limits_[i], &plan_.starts[i].shares, start_requests_[i]});
    }
    std::sort(releases.begin(), releases.end(),
              [](const Release& a, const Release& b) { return a.at < b.at; });
    Reservation reservation{j.id, -1, {}};
    FreeCapacity sim = free_;
    for (size_t i = 0; i < releases.size();) {
      const Millis at = releases[i].at;
      for (; i < releases.size() && releases[i].at == at; ++i) {
        sim.Give(*releases[i].shares, *releases[i].request);
      }
      if (auto shares = sim.Place(j.request)) {
        reservation.start_at = at;
        reservation.shares = std::move(*shares);
        break;
      }
    }
    const size_t n_nodes = in_.nodes->size();
    holdback_.assign(n_nodes, Amount{});
    slack_.assign(n_nodes, Amount{});
    reserved_.assign(n_nodes, false);
    if (reservation.start_at >= 0) {
      for (const auto& s : reservation.shares) {
        const Amount at_start = sim.Free(s.node);
        reserved_[s.node] = true;
        slack_[s.node] = {
            at_start.slots - s.ranks * std::max<int64_t>(1, j.request.cpus_per_rank),
            at_start.gpus - s.ranks * j.request.gpus_per_rank,
            at_start.memory - s.ranks * j.request.memory_per_rank};
      }
    } else {
      // Unknown start: hold every node it could ever run on.
      ResourceRequest one = j.request;
      one.ranks = 1;
      one.ranks_per_node = 0;
      for (size_t n = 0; n < n_nodes; ++n) {
        const NodeState& node = (*in_.nodes)[n];
        NodeState empty = node;
        empty.used_slots = 0;
        empty.used_memory = 0;
        empty.used_gpu_mask = 0;
        reserved_[n] = node.availability == NodeAvailability::kUp &&
                       HasAllLabels(node.labels, j.request.labels) &&
                       node.slots >= std::max<int64_t>(1, one.cpus_per_rank) &&
                       node.gpus >= one.gpus_per_rank &&
                       node.memory_bytes >= one.memory_per_rank;
      }
    }
    plan_.reservation = std::move(reservation);
    for (size_t n = 0; n < n_nodes; ++n) {
      if (reserved_[n]) UpdateHoldback(static_cast<int32_t>(n));
    }
    const Amount f = free_.TotalFree();
    std::string text = "Resources: needs " + DescribeNeed(j.request) + ", " +
                       DescribeAmount(f, j.request.gpus_per_rank > 0,
                                      j.request.memory_per_rank > 0) +
                       " free; ";
    text += plan_.reservation->start_at >= 0
                ? "reserved to start by " + WallClock(plan_.reservation->start_at)
                : "start unknown: jobs without a time_limit hold what it needs (reserved)";
    Wait(j, WaitKind::kResources, Reason(std::move(text)));
  }

  const SchedulingInput& in_;
  FreeCapacity free_;
  SchedulingPlan plan_;
  bool any_up_ = false;
  bool any_drained_ = false;
  bool classes_built_ = false;
  std::vector<NodeClass> up_classes_;
  std::vector<double> key_;     // usage per weight, by user (last slot: unknown users)
  std::vector<double> weight_;
  std::vector<std::vector<std::pair<const QueuedJob*, ShapeMemo*>>> user_queues_;
  std::unordered_map<ResourceRequest, ShapeMemo, ResourceRequestHash> memo_;
  std::unordered_map<std::string, uint32_t> reason_ids_;
  // Jobs started in this pass, in plan_.starts order (limits and requests, for the reservation).
  std::vector<Millis> start_limits_;
  std::vector<const ResourceRequest*> start_requests_;
  std::vector<int64_t> running_ranks_;  // by user: running now plus started in this pass
  std::vector<int64_t> running_gpus_;
  std::vector<size_t> started_bounded_;
  // The reservation, once a job is blocked.
  const QueuedJob* holder_ = nullptr;
  std::vector<bool> reserved_;   // by node: the reservation needs (or, unknown start, may need) it
  std::vector<Amount> slack_;    // by reserved node: what is free at the reserved start beyond it
  std::vector<Amount> holdback_; // by node: free now that jobs running past the start must leave
  uint32_t priority_reason_ = kNoReason;
  uint32_t fair_share_reason_ = kNoReason;
};

}  // namespace

const char* WaitKindName(WaitKind kind) {
  switch (kind) {
    case WaitKind::kHeld: return "Held";
    case WaitKind::kQuota: return "Quota";
    case WaitKind::kDependency: return "Dependency";
    case WaitKind::kInfeasible: return "Infeasible";
    case WaitKind::kNoWorkers: return "NoWorkers";
    case WaitKind::kResources: return "Resources";
    case WaitKind::kPriority: return "Priority";
    case WaitKind::kFairShare: return "FairShare";
    case WaitKind::kReserved: return "Reserved";
  }
  return "?";
}

SchedulingPlan PlanPass(const SchedulingInput& in) {
  static const std::vector<NodeState> kNoNodes;
  static const std::vector<RunningJob> kNoRunning;
  SchedulingInput checked = in;
  if (checked.nodes == nullptr) checked.nodes = &kNoNodes;
  if (checked.running == nullptr) checked.running = &kNoRunning;
  return Pass(checked).Run();
}

std::vector<int64_t> TimedOut(const std::vector<RunningJob>& running, Millis now) {
  std::vector<int64_t> out;
  for (const auto& r : running) {
    if (r.end_by > 0 && r.end_by <= now) out.push_back(r.id);
  }
  return out;
}

double UsageRate(const ResourceRequest& r, UsageUnit unit) {
  return unit == UsageUnit::kGpuSeconds ? static_cast<double>(r.Gpus())
                                        : static_cast<double>(r.ranks);
}

}  // namespace kiln::core
