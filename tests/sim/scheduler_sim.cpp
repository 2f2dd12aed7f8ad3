#include "tests/sim/scheduler_sim.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <queue>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "scheduler/core/fair_share.h"
#include "scheduler/core/gang_placement.h"
#include "scheduler/core/start_estimate.h"

namespace kiln::sim {

namespace {

using core::NodeAvailability;
using core::NodeShare;
using core::NodeState;
using core::ResourceRequest;

// Distributions written out so that a seed gives the same trace with any standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double Uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool Chance(double p) { return Uniform() < p; }
  int64_t Int(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(gen_() % static_cast<uint64_t>(hi - lo + 1));
  }
  double Exponential(double mean) { return -mean * std::log(1.0 - Uniform()); }
  double LogUniform(double lo, double hi) { return lo * std::exp(Uniform() * std::log(hi / lo)); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(Int(0, static_cast<int64_t>(v.size()) - 1))];
  }
  size_t Weighted(const std::vector<double>& weights) {
    double total = 0;
    for (double w : weights) total += w;
    double x = Uniform() * total;
    for (size_t i = 0; i < weights.size(); ++i) {
      if (x < weights[i]) return i;
      x -= weights[i];
    }
    return weights.size() - 1;
  }

 private:
  std::mt19937_64 gen_;
};

int64_t SlotsPerRank(const ResourceRequest& r) { return std::max<int64_t>(1, r.cpus_per_rank); }

std::string Seconds(Millis ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

// ---- Trace generation -------------------------------------------------------------------------

int64_t DrawRanks(Rng& rng, int64_t max_ranks) {
  static const std::vector<double> kWeights = {30, 12, 15, 15, 10, 5, 3, 10};
  static const std::vector<int64_t> kSizes = {1, 2, 4, 8, 16, 32, 64, 0};  // 0: uniform
  const int64_t size = kSizes[rng.Weighted(kWeights)];
  const int64_t ranks = size == 0 ? rng.Int(1, max_ranks) : size;
  return std::max<int64_t>(1, std::min(ranks, max_ranks));
}

// A random k dividing r.ranks such that k ranks fit on one node; 0 if none.
int64_t DrawRanksPerNode(Rng& rng, const ResourceRequest& r, const ClusterConfig& cluster) {
  std::vector<int64_t> ks;
  for (int64_t k = 1; k <= r.ranks; ++k) {
    if (r.ranks % k != 0 || k * SlotsPerRank(r) > cluster.slots_per_node) continue;
    if (r.gpus_per_rank > 0 && k * r.gpus_per_rank > cluster.gpus_per_node) continue;
    ks.push_back(k);
  }
  return ks.empty() ? 0 : rng.Pick(ks);
}

// A gang that needs several nodes: 16..64 ranks of a node's eighth, or of one GPU each.
ResourceRequest DrawWideGang(Rng& rng, const ClusterConfig& cluster, const TraceConfig& config,
                             bool gpu) {
  ResourceRequest r;
  r.ranks = std::min<int64_t>(config.max_ranks, rng.Pick(std::vector<int64_t>{16, 32, 48, 64}));
  if (gpu) {
    r.gpus_per_rank = 1;
    r.cpus_per_rank = rng.Pick(std::vector<int64_t>{1, 2, 4});
  } else {
    r.cpus_per_rank = std::max<int64_t>(1, cluster.slots_per_node / 8);
  }
  if (rng.Chance(0.5)) r.ranks_per_node = DrawRanksPerNode(rng, r, cluster);
  return r;
}

ResourceRequest DrawRequest(Rng& rng, const ClusterConfig& cluster, const TraceConfig& config) {
  const bool gpu = cluster.gpu_node_fraction > 0 && cluster.gpus_per_node > 0 &&
                   rng.Chance(config.gpu_fraction);
  ResourceRequest r;
  if (rng.Chance(config.multi_node_fraction)) {
    r = DrawWideGang(rng, cluster, config, gpu);
  } else if (gpu) {
    r.gpus_per_rank = std::min<int64_t>(cluster.gpus_per_node,
                                        rng.Pick(std::vector<int64_t>{1, 1, 1, 2, 4}));
    r.cpus_per_rank = rng.Pick(std::vector<int64_t>{1, 2, 4});
    r.ranks = std::min<int64_t>(config.max_ranks, rng.Pick(std::vector<int64_t>{1, 1, 2, 4, 8, 16}));
  } else {
    r.cpus_per_rank = rng.Pick(std::vector<int64_t>{1, 1, 1, 1, 2, 4});
    r.ranks = DrawRanks(rng, config.max_ranks);
  }
  if (r.ranks_per_node == 0 && rng.Chance(config.ranks_per_node_fraction)) {
    r.ranks_per_node = DrawRanksPerNode(rng, r, cluster);
  }
  if (rng.Chance(config.spread_fraction)) r.spread = true;
  if (cluster.label_stride > 0 && rng.Chance(config.label_fraction)) {
    r.labels = rng.Pick(std::vector<std::vector<std::string>>{{"ib"}, {"nvme"}, {"ib", "nvme"}});
  }
  if (rng.Chance(config.memory_fraction)) {
    r.memory_per_rank = rng.Pick(std::vector<int64_t>{1, 2, 4, 8, 16}) << 30;
  }
  return r;
}

// Whether the policy could ever run each request shape on `nodes`, asked once per shape.
class FeasibilityCache {
 public:
  explicit FeasibilityCache(const std::vector<NodeState>& nodes) : nodes_(nodes) {}
  bool Feasible(const ResourceRequest& r) {
    auto it = known_.find(r);
    if (it == known_.end()) it = known_.emplace(r, !core::InfeasibleReason(nodes_, r)).first;
    return it->second;
  }

 private:
  const std::vector<NodeState>& nodes_;
  std::unordered_map<ResourceRequest, bool, core::ResourceRequestHash> known_;
};

ResourceRequest DrawFeasibleRequest(Rng& rng, const ClusterConfig& cluster,
                                    const TraceConfig& config, FeasibilityCache& feasibility) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    ResourceRequest r = DrawRequest(rng, cluster, config);
    if (feasibility.Feasible(r)) return r;
  }
  return ResourceRequest{};  // one rank, one slot
}

// Sets time_limit_ms and runtime_ms: a limit log-uniform in [min, max] (whole minutes), the run
// 10%..100% of it (exactly the limit now and then); a few jobs have no limit.
void DrawDuration(Rng& rng, const TraceConfig& config, SimJob& job) {
  const double lo = static_cast<double>(config.min_limit_ms);
  const double hi = static_cast<double>(std::max(config.max_limit_ms, config.min_limit_ms + 1));
  if (rng.Chance(config.no_limit_fraction)) {
    job.time_limit_ms = 0;
    job.runtime_ms = static_cast<Millis>(rng.LogUniform(lo, hi));
    return;
  }
  job.time_limit_ms = std::max<Millis>(kMinute, static_cast<Millis>(rng.LogUniform(lo, hi)) /
                                                    kMinute * kMinute);
  job.runtime_ms = rng.Chance(0.05)
                       ? job.time_limit_ms
                       : static_cast<Millis>(static_cast<double>(job.time_limit_ms) *
                                             (0.1 + 0.9 * rng.Uniform()));
  job.runtime_ms = std::max<Millis>(kSecond, job.runtime_ms);
}

void DrawDependencies(Rng& rng, const TraceConfig& config, SimJob& job) {
  if (job.id <= 1 || !rng.Chance(config.dependency_fraction)) return;
  const int64_t count = rng.Int(1, 2);
  for (int64_t i = 0; i < count; ++i) {
    job.depends_on.push_back(rng.Int(std::max<int64_t>(1, job.id - 100), job.id - 1));
  }
  std::sort(job.depends_on.begin(), job.depends_on.end());
  job.depends_on.erase(std::unique(job.depends_on.begin(), job.depends_on.end()),
                       job.depends_on.end());
}

// Poisson arrivals from config.start_ms, at the rate that offers `config.load` of the busiest
// resource over the submission span.
void DrawSubmissions(Rng& rng, const TraceConfig& config, const std::vector<NodeState>& nodes,
                     std::vector<SimJob>& jobs) {
  double slot_ms = 0, gpu_ms = 0, slots = 0, gpus = 0;
  for (const auto& j : jobs) {
    slot_ms += static_cast<double>(j.request.ranks * SlotsPerRank(j.request)) *
               static_cast<double>(j.runtime_ms);
    gpu_ms += static_cast<double>(j.request.Gpus()) * static_cast<double>(j.runtime_ms);
  }
  for (const auto& n : nodes) {
    if (n.availability != NodeAvailability::kUp) continue;
    slots += static_cast<double>(n.slots);
    gpus += n.gpus;
  }
  double span = slots > 0 ? slot_ms / slots : 0;
  if (gpus > 0) span = std::max(span, gpu_ms / gpus);
  span /= std::max(1e-6, config.load);
  const double gap = jobs.empty() ? 0 : span / static_cast<double>(jobs.size());
  double t = static_cast<double>(config.start_ms);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i > 0) t += rng.Exponential(gap);
    jobs[i].submit_at = static_cast<Millis>(t);
  }
}

// ---- Invariant helpers -------------------------------------------------------------------------

std::string JobName(int64_t id) { return "job " + std::to_string(id); }

struct Held {
  int64_t slots = 0;
  int64_t gpus = 0;
  int64_t memory = 0;
};

// ---- The simulator -----------------------------------------------------------------------------

class Simulator {
 public:
  Simulator(const ClusterConfig& cluster, const Trace& trace, const SimOptions& options)
      : trace_(trace),
        options_(options),
        nodes_(BuildNodes(cluster)),
        queued_(trace.jobs.size()),
        records_(trace.jobs.size()),
        ledger_(options.half_life_s) {
    for (size_t i = 0; i < trace.jobs.size(); ++i) {
      const SimJob& j = trace.jobs[i];
      core::QueuedJob& q = queued_[i];
      q.id = j.id;
      q.user = j.user;
      q.priority = j.priority;
      q.request = j.request;
      q.time_limit_ms = j.time_limit_ms;
      q.depends_on = j.depends_on;
    }
    for (const auto& u : trace.users) users_.push_back({u.name, 0, u.weight});
    user_rank_seconds_.assign(trace.users.size(), 0.0);
    window_begin_ = options.window_begin;
    window_end_ = options.window_end;
    if (window_end_ == 0 && !trace.jobs.empty()) {
      window_begin_ = trace.jobs.front().submit_at;
      window_end_ = trace.jobs.back().submit_at;
    }
    for (const auto& n : nodes_) {
      if (n.availability != NodeAvailability::kUp) continue;
      up_slots_ += n.slots;
      up_gpus_ += n.gpus;
    }
  }

  SimResult Run() {
    if (!TraceIsValid()) return Finish();
    for (Millis now = NextEventTime(); now >= 0; now = NextEventTime()) {
      CompleteUpTo(now);
      ArriveUpTo(now);
      if (pending_.empty()) {
        held_job_ = 0;
        continue;
      }
      RebuildUsage(nodes_, running_, log_);
      const core::SchedulingPlan plan = Plan(now);
      CheckCoverage(plan);
      ApplyStarts(plan, now);
      ApplyFailures(plan, now);
      RebuildUsage(nodes_, running_, log_);
      CheckReservation(plan, now);
      if (options_.estimate_starts) EstimateNewWaits(plan, now);
    }
    return Finish();
  }

 private:
  enum class Phase : uint8_t { kFuture, kPending, kRunning, kCompleted, kFailed };
  struct Record {
    Phase phase = Phase::kFuture;
    Millis start = -1;
    int32_t running_index = -1;  // into running_
  };
  using Completion = std::pair<Millis, int64_t>;  // (end, job id)

  const SimJob& Job(int64_t id) const { return trace_.jobs[static_cast<size_t>(id - 1)]; }
  Record& RecordOf(int64_t id) { return records_[static_cast<size_t>(id - 1)]; }
  bool Known(int64_t id) const {
    return id >= 1 && id <= static_cast<int64_t>(trace_.jobs.size());
  }
  // A simulated time, relative to the first submission.
  std::string Rel(Millis t) const {
    return "+" + Seconds(t - (trace_.jobs.empty() ? 0 : trace_.jobs.front().submit_at));
  }
  std::string At(Millis now) const { return "t=" + Rel(now) + ": "; }

  // Ids 1..n, non-decreasing submit times, known users, dependencies on earlier jobs; logs why not.
  bool TraceIsValid() {
    const auto& jobs = trace_.jobs;
    for (size_t i = 0; i < jobs.size(); ++i) {
      const SimJob& j = jobs[i];
      const bool ordered = j.id == static_cast<int64_t>(i + 1) &&
                           (i == 0 || jobs[i - 1].submit_at <= j.submit_at);
      const bool user = j.user >= 0 && static_cast<size_t>(j.user) < trace_.users.size();
      const bool deps = std::all_of(j.depends_on.begin(), j.depends_on.end(),
                                    [&](int64_t d) { return d >= 1 && d < j.id; });
      if (!ordered || !user || !deps) {
        log_.Add("trace: " + JobName(j.id) + " at index " + std::to_string(i) +
                 " breaks the Trace contract");
        return false;
      }
    }
    return true;
  }

  // The next submission or completion; -1 when there is none.
  Millis NextEventTime() const {
    Millis next = -1;
    if (next_arrival_ < trace_.jobs.size()) next = trace_.jobs[next_arrival_].submit_at;
    if (!completions_.empty() && (next < 0 || completions_.top().first < next)) {
      next = completions_.top().first;
    }
    return next;
  }

  void CompleteUpTo(Millis now) {
    while (!completions_.empty() && completions_.top().first <= now) {
      const auto [end, id] = completions_.top();
      completions_.pop();
      Complete(id, end);
    }
  }

  // Ends a running job: returns its resources, charges its user, accounts its use.
  void Complete(int64_t id, Millis end) {
    Record& rec = RecordOf(id);
    const SimJob& job = Job(id);
    const size_t i = static_cast<size_t>(rec.running_index);
    if (i + 1 != running_.size()) {
      running_[i] = std::move(running_.back());
      RecordOf(running_[i].id).running_index = static_cast<int32_t>(i);
    }
    running_.pop_back();
    rec.running_index = -1;
    rec.phase = Phase::kCompleted;
    ledger_.Charge(trace_.users[job.user].name, core::UsageRate(job.request, options_.usage_unit),
                   rec.start, end);
    slot_ms_used_ += static_cast<double>(job.request.ranks * SlotsPerRank(job.request)) *
                     static_cast<double>(end - rec.start);
    gpu_ms_used_ += static_cast<double>(job.request.Gpus()) * static_cast<double>(end - rec.start);
    const Millis overlap = std::min(end, window_end_) - std::max(rec.start, window_begin_);
    if (overlap > 0) {
      user_rank_seconds_[job.user] +=
          static_cast<double>(job.request.ranks) * static_cast<double>(overlap) / 1000.0;
    }
    last_completion_ = std::max(last_completion_, end);
    ++completed_;
  }

  void ArriveUpTo(Millis now) {
    for (; next_arrival_ < trace_.jobs.size() && trace_.jobs[next_arrival_].submit_at <= now;
         ++next_arrival_) {
      const SimJob& job = trace_.jobs[next_arrival_];
      RecordOf(job.id).phase = Phase::kPending;
      pending_.insert({-job.priority, job.id});
    }
  }

  core::JobState StateOf(int64_t id) const {
    if (!Known(id)) return core::JobState::kFailed;
    switch (records_[static_cast<size_t>(id - 1)].phase) {
      case Phase::kFuture:
      case Phase::kPending: return core::JobState::kPending;
      case Phase::kRunning: return core::JobState::kRunning;
      case Phase::kCompleted: return core::JobState::kCompleted;
      case Phase::kFailed: return core::JobState::kFailed;
    }
    return core::JobState::kFailed;
  }

  // Users' usage at `now`: decayed charges of ended jobs plus running jobs' charges.
  void UpdateUsage(Millis now) {
    for (auto& u : users_) u.usage = ledger_.Usage(u.name, now);
    for (const auto& r : running_) {
      users_[static_cast<size_t>(r.user)].usage += ledger_.RunningCharge(
          core::UsageRate(r.request, options_.usage_unit), RecordOf(r.id).start, now);
    }
  }

  core::SchedulingPlan Plan(Millis now) {
    in_now_ = now;
    UpdateUsage(now);
    queue_.clear();
    dependencies_.clear();
    for (const auto& [negated_priority, id] : pending_) {
      const core::QueuedJob& q = queued_[static_cast<size_t>(id - 1)];
      queue_.push_back(&q);
      for (int64_t d : q.depends_on) dependencies_[d] = StateOf(d);
    }
    core::SchedulingInput in;
    in.nodes = &nodes_;
    in.running = &running_;
    in.queue = queue_;
    in.users = &users_;
    in.dependencies = &dependencies_;
    in.now = now;
    in.usage_unit = options_.usage_unit;
    in.commitment_s = ledger_.MeanLifeSeconds();
    in.backfill = options_.backfill;

    const auto t0 = std::chrono::steady_clock::now();
    core::SchedulingPlan plan = core::PlanPass(in);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++passes_;
    total_pass_ms_ += ms;
    max_pass_ms_ = std::max(max_pass_ms_, ms);
    max_queue_ = std::max<int64_t>(max_queue_, static_cast<int64_t>(queue_.size()));
    return plan;
  }

  // Every queued job appears exactly once in starts, waits or failures, and nothing else does.
  void CheckCoverage(const core::SchedulingPlan& plan) {
    seen_.resize(trace_.jobs.size(), 0);
    size_t named = 0;
    auto see = [&](int64_t id, const char* where) {
      if (!Known(id) || RecordOf(id).phase != Phase::kPending) {
        log_.Add(At(in_now_) + "plan " + where + " names " + JobName(id) + ", which is not queued");
        return;
      }
      int64_t& mark = seen_[static_cast<size_t>(id - 1)];
      if (mark == passes_) {
        log_.Add(At(in_now_) + JobName(id) + " appears more than once in the plan");
        return;
      }
      mark = passes_;
      ++named;
    };
    for (const auto& s : plan.starts) see(s.job_id, "starts");
    for (const auto& w : plan.waits) see(w.job_id, "waits");
    for (const auto& f : plan.failures) see(f.job_id, "failures");
    if (named == queue_.size()) return;
    for (const core::QueuedJob* q : queue_) {
      if (seen_[static_cast<size_t>(q->id - 1)] != passes_) {
        log_.Add(At(in_now_) + JobName(q->id) + " is queued but missing from the plan");
      }
    }
  }

  void ApplyStarts(const core::SchedulingPlan& plan, Millis now) {
    for (const auto& s : plan.starts) {
      if (!Known(s.job_id) || RecordOf(s.job_id).phase != Phase::kPending) continue;
      const SimJob& job = Job(s.job_id);
      CheckGang(nodes_, job.request, s, log_);
      for (int64_t d : job.depends_on) {
        if (StateOf(d) != core::JobState::kCompleted) {
          log_.Add(At(now) + JobName(job.id) + " started before its dependency " + JobName(d) +
                   " completed");
        }
      }
      Start(job, s, now);
    }
  }

  void Start(const SimJob& job, const core::JobStart& s, Millis now) {
    core::RunningJob r;
    r.id = job.id;
    r.user = job.user;
    r.request = job.request;
    r.shares = s.shares;
    r.end_by = job.time_limit_ms > 0 ? now + job.time_limit_ms : 0;
    Record& rec = RecordOf(job.id);
    rec.phase = Phase::kRunning;
    rec.start = now;
    rec.running_index = static_cast<int32_t>(running_.size());
    running_.push_back(std::move(r));
    pending_.erase({-job.priority, job.id});
    completions_.push({now + job.runtime_ms, job.id});
    const double wait_s = static_cast<double>(now - job.submit_at) / 1000.0;
    wait_sum_s_ += wait_s;
    max_wait_s_ = std::max(max_wait_s_, wait_s);
    ++started_;
    if (s.backfilled) ++backfilled_;
    if (static_cast<size_t>(job.id - 1) < first_estimate_.size()) {
      const Millis first = first_estimate_[static_cast<size_t>(job.id - 1)];
      if (first >= 0) {
        estimate_errors_s_.push_back(std::abs(static_cast<double>(now - first)) / 1000.0);
      } else if (first == -1) {
        ++estimates_unknown_;
      }
    }
  }

  // Nothing in a simulation fails, so a dependency cannot fail either: any failure is wrong.
  void ApplyFailures(const core::SchedulingPlan& plan, Millis now) {
    for (const auto& f : plan.failures) {
      if (!Known(f.job_id) || RecordOf(f.job_id).phase != Phase::kPending) continue;
      log_.Add(At(now) + JobName(f.job_id) + " failed: " + f.reason);
      RecordOf(f.job_id).phase = Phase::kFailed;
      pending_.erase({-Job(f.job_id).priority, f.job_id});
      ++failed_;
    }
  }

  // (c). Called after the pass's starts are applied.
  void CheckReservation(const core::SchedulingPlan& plan, Millis now) {
    const auto& res = plan.reservation;
    if (res && Known(res->job_id)) {
      CheckReservationFits(nodes_, running_, *res, Job(res->job_id).request, log_);
    }
    if (held_job_ != 0 && held_start_ >= 0 && RecordOf(held_job_).start == now &&
        now > held_start_) {
      log_.Add(At(now) + JobName(held_job_) + " started later than its reserved start " +
               Rel(held_start_));
    }
    if (res && res->job_id == held_job_ && held_start_ >= 0) {
      const bool ahead = std::any_of(plan.starts.begin(), plan.starts.end(),
                                     [](const core::JobStart& s) { return !s.backfilled; });
      const Millis start = res->start_at < 0 ? std::numeric_limits<Millis>::max() : res->start_at;
      if (!ahead && start > held_start_) {
        log_.Add(At(now) + "reserved start of " + JobName(held_job_) + " moved later, from " +
                 Rel(held_start_) + " to " +
                 (res->start_at < 0 ? std::string("unknown") : Rel(res->start_at)) +
                 ", though no job ordered ahead of it started");
      }
    }
    held_job_ = res ? res->job_id : 0;
    held_start_ = res ? res->start_at : -1;
  }

  // Each job's first start estimate (core/start_estimate.h), made the first pass it waits; its
  // error is measured when it starts.
  void EstimateNewWaits(const core::SchedulingPlan& plan, Millis now) {
    first_estimate_.resize(trace_.jobs.size(), -2);  // -2: not estimated yet
    size_t last_new = 0;
    bool any_new = false;
    for (size_t i = 0; i < plan.waits.size(); ++i) {
      if (first_estimate_[static_cast<size_t>(plan.waits[i].job_id - 1)] == -2) {
        last_new = i;
        any_new = true;
      }
    }
    if (!any_new) return;
    std::vector<core::EstimateRunning> running;
    running.reserve(running_.size());
    for (const auto& r : running_) {
      // With progress, a running job's end is known as kiln-train's progress rate would tell it
      // (its true end); else its time limit is all there is.
      const Millis ends =
          options_.estimate_from_progress ? RecordOf(r.id).start + Job(r.id).runtime_ms : r.end_by;
      running.push_back({r.id, r.request, r.shares, ends});
    }
    std::vector<core::EstimateWaiting> waiting;
    waiting.reserve(last_new + 1);
    for (size_t i = 0; i <= last_new; ++i) {
      const core::JobWait& w = plan.waits[i];
      const core::QueuedJob& q = queued_[static_cast<size_t>(w.job_id - 1)];
      waiting.push_back({w.job_id, q.request, q.time_limit_ms,
                         w.kind == core::WaitKind::kDependency || w.kind == core::WaitKind::kHeld});
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& e : core::EstimateStarts(nodes_, running, waiting, now, kMaxEstimated)) {
      Millis& first = first_estimate_[static_cast<size_t>(e.job_id - 1)];
      if (first != -2) continue;
      // A job waiting for a dependency is estimated once that is done (the estimate could not
      // know when the dependency completes).
      const bool blocked = std::any_of(waiting.begin(), waiting.end(), [&](const auto& w) {
        return w.id == e.job_id && w.blocked;
      });
      if (!blocked) first = e.at;
    }
    estimate_ms_ +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

  SimResult Finish() {
    SimResult out;
    out.estimate_errors_s = estimate_errors_s_;
    out.estimates_unknown = estimates_unknown_;
    out.estimate_ms = estimate_ms_;
    for (const auto& job : trace_.jobs) {
      const Record& rec = RecordOf(job.id);
      if (rec.phase == Phase::kCompleted || rec.phase == Phase::kFailed) continue;
      log_.Add(JobName(job.id) + " never completed: it is " +
               core::JobStateName(StateOf(job.id)) + " at the end of the simulation");
    }
    out.violations = log_.messages();
    out.violation_count = log_.count();
    out.jobs = static_cast<int64_t>(trace_.jobs.size());
    out.jobs_completed = completed_;
    out.jobs_failed = failed_;
    out.backfilled = backfilled_;
    if (!trace_.jobs.empty() && completed_ > 0) {
      out.makespan_ms = last_completion_ - trace_.jobs.front().submit_at;
    }
    out.mean_wait_s = started_ > 0 ? wait_sum_s_ / static_cast<double>(started_) : 0;
    out.max_wait_s = max_wait_s_;
    if (out.makespan_ms > 0 && up_slots_ > 0) {
      out.utilisation =
          slot_ms_used_ / (static_cast<double>(up_slots_) * static_cast<double>(out.makespan_ms));
    }
    if (out.makespan_ms > 0 && up_gpus_ > 0) {
      out.gpu_utilisation =
          gpu_ms_used_ / (static_cast<double>(up_gpus_) * static_cast<double>(out.makespan_ms));
    }
    out.passes = passes_;
    out.max_queue = max_queue_;
    out.total_pass_ms = total_pass_ms_;
    out.max_pass_ms = max_pass_ms_;
    out.user_rank_seconds = user_rank_seconds_;
    return out;
  }

  const Trace& trace_;
  const SimOptions options_;
  std::vector<NodeState> nodes_;
  std::vector<core::QueuedJob> queued_;  // by id - 1
  std::vector<Record> records_;          // by id - 1
  std::vector<core::RunningJob> running_;
  std::vector<core::UserShare> users_;
  core::FairShareLedger ledger_;
  std::priority_queue<Completion, std::vector<Completion>, std::greater<Completion>> completions_;
  std::set<std::pair<int64_t, int64_t>> pending_;  // (-priority, id): the queue's order
  size_t next_arrival_ = 0;
  // Scratch for one pass.
  std::vector<const core::QueuedJob*> queue_;
  std::unordered_map<int64_t, core::JobState> dependencies_;
  std::vector<int64_t> seen_;  // by id - 1: the pass that last named the job
  Millis in_now_ = 0;  // the time of the pass
  // The previous pass's reservation (job 0: none).
  int64_t held_job_ = 0;
  Millis held_start_ = -1;

  ViolationLog log_;
  Millis window_begin_ = 0, window_end_ = 0;
  std::vector<double> user_rank_seconds_;
  int64_t up_slots_ = 0, up_gpus_ = 0;
  double slot_ms_used_ = 0, gpu_ms_used_ = 0;
  Millis last_completion_ = 0;
  int64_t completed_ = 0, failed_ = 0, started_ = 0, backfilled_ = 0;
  double wait_sum_s_ = 0, max_wait_s_ = 0;
  static constexpr size_t kMaxEstimated = 2000;
  std::vector<Millis> first_estimate_;  // by id - 1: -2 none yet, -1 unknown
  std::vector<double> estimate_errors_s_;
  int64_t estimates_unknown_ = 0;
  double estimate_ms_ = 0;
  int64_t passes_ = 0, max_queue_ = 0;
  double total_pass_ms_ = 0, max_pass_ms_ = 0;
};

}  // namespace

// ---- Public API --------------------------------------------------------------------------------

std::vector<NodeState> BuildNodes(const ClusterConfig& cluster) {
  std::vector<NodeState> nodes(static_cast<size_t>(std::max(0, cluster.nodes)));
  const int gpu_nodes =
      static_cast<int>(std::lround(cluster.gpu_node_fraction * static_cast<double>(cluster.nodes)));
  for (int i = 0; i < cluster.nodes; ++i) {
    NodeState& n = nodes[static_cast<size_t>(i)];
    n.name = "n" + std::to_string(i);
    n.slots = cluster.slots_per_node;
    n.memory_bytes = cluster.memory_per_node;
    n.gpus = i < gpu_nodes ? cluster.gpus_per_node : 0;
    if (cluster.label_stride > 0 && i % cluster.label_stride == 0) {
      n.labels.push_back("ib");
      if ((i / cluster.label_stride) % 2 == 0) n.labels.push_back("nvme");
    }
    if (i >= cluster.nodes - cluster.drained_nodes) n.availability = NodeAvailability::kDrained;
  }
  return nodes;
}

Trace GenerateTrace(const ClusterConfig& cluster, const TraceConfig& config) {
  Rng rng(config.seed);
  const std::vector<NodeState> nodes = BuildNodes(cluster);
  FeasibilityCache feasibility(nodes);
  Trace trace;
  trace.users = config.users;
  std::vector<double> activity;
  for (const auto& u : config.users) activity.push_back(u.activity);
  trace.jobs.resize(static_cast<size_t>(std::max(0, config.jobs)));
  for (size_t i = 0; i < trace.jobs.size(); ++i) {
    SimJob& job = trace.jobs[i];
    job.id = static_cast<int64_t>(i + 1);
    job.user = activity.empty() ? 0 : static_cast<int32_t>(rng.Weighted(activity));
    job.priority = rng.Chance(config.priority_fraction) ? rng.Int(1, 3) : 0;
    job.request = DrawFeasibleRequest(rng, cluster, config, feasibility);
    DrawDuration(rng, config, job);
    DrawDependencies(rng, config, job);
  }
  DrawSubmissions(rng, config, nodes, trace.jobs);
  return trace;
}

Trace IdenticalStreams(const Trace& stream, const std::vector<UserSpec>& users) {
  Trace out;
  out.users = users;
  const int64_t n_users = static_cast<int64_t>(users.size());
  for (const auto& job : stream.jobs) {
    for (int64_t u = 0; u < n_users; ++u) {
      SimJob copy = job;
      copy.id = (job.id - 1) * n_users + u + 1;
      copy.user = static_cast<int32_t>(u);
      for (int64_t& d : copy.depends_on) d = (d - 1) * n_users + u + 1;
      out.jobs.push_back(std::move(copy));
    }
  }
  return out;
}

SimResult Simulate(const ClusterConfig& cluster, const Trace& trace, const SimOptions& options) {
  return Simulator(cluster, trace, options).Run();
}

void ViolationLog::Add(std::string message) {
  ++count_;
  if (messages_.size() < kMaxViolationMessages) messages_.push_back(std::move(message));
}

void RebuildUsage(std::vector<NodeState>& nodes, const std::vector<core::RunningJob>& running,
                  ViolationLog& log) {
  for (auto& n : nodes) {
    n.used_slots = 0;
    n.used_memory = 0;
    n.used_gpu_mask = 0;
  }
  for (const auto& r : running) {
    for (const NodeShare& s : r.shares) {
      if (s.node < 0 || static_cast<size_t>(s.node) >= nodes.size()) {
        log.Add(JobName(r.id) + " runs on node index " + std::to_string(s.node) +
                ", which does not exist");
        continue;
      }
      NodeState& n = nodes[static_cast<size_t>(s.node)];
      n.used_slots += s.ranks * SlotsPerRank(r.request);
      n.used_memory += s.ranks * r.request.memory_per_rank;
      for (int id : s.gpu_ids) {
        if (id < 0 || id >= n.gpus) {
          log.Add(JobName(r.id) + " holds GPU " + std::to_string(id) + " of node " + n.name +
                  ", which has " + std::to_string(n.gpus));
          continue;
        }
        const uint64_t bit = uint64_t{1} << id;
        if ((n.used_gpu_mask & bit) != 0) {
          log.Add("GPU " + std::to_string(id) + " of node " + n.name + " is given twice (also to " +
                  JobName(r.id) + ")");
        }
        n.used_gpu_mask |= bit;
      }
    }
  }
  for (const auto& n : nodes) {
    if (n.used_slots > n.slots) {
      log.Add("node " + n.name + ": running jobs hold " + std::to_string(n.used_slots) +
              " slots of " + std::to_string(n.slots));
    }
    if (n.used_memory > n.memory_bytes) {
      log.Add("node " + n.name + ": running jobs hold " + std::to_string(n.used_memory) +
              " bytes of memory of " + std::to_string(n.memory_bytes));
    }
  }
}

void CheckGang(const std::vector<NodeState>& nodes, const ResourceRequest& request,
               const core::JobStart& start, ViolationLog& log) {
  const std::string who = JobName(start.job_id) + " start: ";
  int64_t ranks = 0;
  std::set<int32_t> used;
  for (const NodeShare& s : start.shares) {
    ranks += s.ranks;
    if (s.node < 0 || static_cast<size_t>(s.node) >= nodes.size()) {
      log.Add(who + "share on node index " + std::to_string(s.node) + ", which does not exist");
      continue;
    }
    const NodeState& n = nodes[static_cast<size_t>(s.node)];
    if (!used.insert(s.node).second) log.Add(who + "two shares on node " + n.name);
    if (n.availability != NodeAvailability::kUp) log.Add(who + "share on node " + n.name + ", not up");
    if (!core::HasAllLabels(n.labels, request.labels)) {
      log.Add(who + "share on node " + n.name + ", which lacks a wanted label");
    }
    if (s.ranks <= 0) log.Add(who + "empty share on node " + n.name);
    if (request.ranks_per_node > 0 && s.ranks != request.ranks_per_node) {
      log.Add(who + std::to_string(s.ranks) + " ranks on node " + n.name + ", ranks_per_node is " +
              std::to_string(request.ranks_per_node));
    }
    if (static_cast<int64_t>(s.gpu_ids.size()) != s.ranks * request.gpus_per_rank) {
      log.Add(who + std::to_string(s.gpu_ids.size()) + " GPU ids on node " + n.name + " for " +
              std::to_string(s.ranks) + " ranks of " + std::to_string(request.gpus_per_rank) +
              " GPUs");
    }
  }
  if (ranks != request.ranks) {
    log.Add(who + "shares hold " + std::to_string(ranks) + " ranks, the gang has " +
            std::to_string(request.ranks));
  }
}

void CheckReservationFits(const std::vector<NodeState>& nodes,
                          const std::vector<core::RunningJob>& running,
                          const core::Reservation& reservation, const ResourceRequest& request,
                          ViolationLog& log) {
  if (reservation.start_at < 0) return;
  const std::string who = "reservation of " + JobName(reservation.job_id) + ": ";
  std::unordered_map<int32_t, Held> held;  // reserved nodes: what is still held at the start
  int64_t ranks = 0;
  for (const NodeShare& s : reservation.shares) {
    ranks += s.ranks;
    if (s.node < 0 || static_cast<size_t>(s.node) >= nodes.size()) {
      log.Add(who + "share on node index " + std::to_string(s.node) + ", which does not exist");
      continue;
    }
    const NodeState& n = nodes[static_cast<size_t>(s.node)];
    if (n.availability != NodeAvailability::kUp || !core::HasAllLabels(n.labels, request.labels)) {
      log.Add(who + "share on node " + n.name + ", which cannot run it");
    }
    Held& h = held[s.node];
    h.slots += s.ranks * SlotsPerRank(request);
    h.gpus += s.ranks * request.gpus_per_rank;
    h.memory += s.ranks * request.memory_per_rank;
  }
  if (ranks != request.ranks) {
    log.Add(who + "shares hold " + std::to_string(ranks) + " ranks, the gang has " +
            std::to_string(request.ranks));
  }
  for (const auto& r : running) {
    if (r.end_by != 0 && r.end_by <= reservation.start_at) continue;
    for (const NodeShare& s : r.shares) {
      auto it = held.find(s.node);
      if (it == held.end()) continue;
      it->second.slots += s.ranks * SlotsPerRank(r.request);
      it->second.gpus += static_cast<int64_t>(s.gpu_ids.size());
      it->second.memory += s.ranks * r.request.memory_per_rank;
    }
  }
  for (const auto& [node, h] : held) {
    const NodeState& n = nodes[static_cast<size_t>(node)];
    if (h.slots > n.slots || h.gpus > n.gpus || h.memory > n.memory_bytes) {
      log.Add(who + "node " + n.name + " is overbooked at the reserved start (slots " +
              std::to_string(h.slots) + "/" + std::to_string(n.slots) + ", GPUs " +
              std::to_string(h.gpus) + "/" + std::to_string(n.gpus) + ", memory " +
              std::to_string(h.memory) + "/" + std::to_string(n.memory_bytes) + ")");
    }
  }
}

}  // namespace kiln::sim
