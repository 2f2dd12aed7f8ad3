// kiln-bench-scheduler-pass: how long one scheduling pass (core::PlanPass) takes at scale, against a
// naive first-fit baseline, and a long simulation with the policy's invariant checks.
//   kiln-bench-scheduler-pass [--nodes N] [--jobs N] [--quick] [--seed S]
// Passes are timed on 10,000 nodes (8,000 CPU nodes × 64 slots, 2,000 GPU nodes × 64 slots × 8
// GPUs) and 100,000 pending jobs: a busy cluster (steady state) and an empty one (cold start),
// median of 7 runs after a warm-up. --nodes and --jobs size the simulation (default 2,000 nodes,
// 50,000 jobs); --quick shrinks everything. Prints human-readable lines, then one JSON line per
// measure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "scheduler/core/gang_placement.h"
#include "scheduler/core/scheduling_policy.h"
#include "tests/sim/scheduler_sim.h"

using namespace kiln;

namespace {

struct Options {
  int pass_nodes = 10'000;
  int pass_jobs = 100'000;
  int runs = 7;
  int sim_nodes = 2'000;
  int sim_jobs = 50'000;
  uint64_t seed = 1;
};

constexpr Millis kNow = 1'700'000'000'000;

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options o;
  bool quick = false;
  std::optional<int> nodes, jobs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--nodes" && has_value) {
      nodes = std::atoi(argv[++i]);
    } else if (arg == "--jobs" && has_value) {
      jobs = std::atoi(argv[++i]);
    } else if (arg == "--seed" && has_value) {
      o.seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: kiln-bench-scheduler-pass [--nodes N] [--jobs N] [--quick] [--seed S]\n");
      return std::nullopt;
    }
  }
  if (quick) {
    o.pass_nodes = 1'000;
    o.pass_jobs = 10'000;
    o.runs = 3;
    o.sim_nodes = 200;
    o.sim_jobs = 2'000;
  }
  if (nodes) o.sim_nodes = std::max(1, *nodes);
  if (jobs) o.sim_jobs = std::max(1, *jobs);
  return o;
}

// "10k" for 10000, else the number.
std::string Count(int n) {
  return n % 1000 == 0 ? std::to_string(n / 1000) + "k" : std::to_string(n);
}

std::vector<sim::UserSpec> Users(int count) {
  std::vector<sim::UserSpec> users;
  for (int u = 0; u < count; ++u) {
    users.push_back({"user" + std::to_string(u), u % 5 == 0 ? 2.0 : 1.0, 1.0 + u % 3});
  }
  return users;
}

// 20% GPU nodes (8 GPUs), 64 slots each, labels on a quarter.
sim::ClusterConfig BenchCluster(int nodes) {
  sim::ClusterConfig c;
  c.nodes = nodes;
  c.slots_per_node = 64;
  c.gpu_node_fraction = 0.2;
  c.gpus_per_node = 8;
  c.label_stride = 4;
  return c;
}

// Everything a SchedulingInput points at.
struct PassInput {
  std::vector<core::NodeState> nodes;
  std::vector<core::RunningJob> running;
  std::vector<core::QueuedJob> jobs;
  std::vector<core::UserShare> users;
  std::unordered_map<int64_t, core::JobState> dependencies;

  core::SchedulingInput Input() const {
    core::SchedulingInput in;
    in.nodes = &nodes;
    in.running = &running;
    for (const auto& j : jobs) in.queue.push_back(&j);
    in.users = &users;
    in.dependencies = &dependencies;
    in.now = kNow;
    in.commitment_s = 2 * 3600 / std::log(2.0);
    in.backfill = true;
    return in;
  }
};

// `count` pending jobs of the generator's mix (no dependencies), in queue order.
std::vector<core::QueuedJob> PendingJobs(const sim::ClusterConfig& cluster, int count,
                                         uint64_t seed) {
  sim::TraceConfig t;
  t.seed = seed;
  t.jobs = count;
  t.users = Users(20);
  t.dependency_fraction = 0;
  const sim::Trace trace = sim::GenerateTrace(cluster, t);
  std::vector<core::QueuedJob> jobs(trace.jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    const sim::SimJob& s = trace.jobs[i];
    jobs[i].id = s.id;
    jobs[i].user = s.user;
    jobs[i].priority = s.priority;
    jobs[i].request = s.request;
    jobs[i].time_limit_ms = s.time_limit_ms;
  }
  std::stable_sort(jobs.begin(), jobs.end(), [](const core::QueuedJob& a, const core::QueuedJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
  });
  return jobs;
}

// Fills the cluster with running jobs (all with time limits, ending over the next hours) until
// no more than `free_fraction` of its slots is free or the jobs run out; sets nodes' used_*.
void FillCluster(const sim::ClusterConfig& cluster, double free_fraction, uint64_t seed,
                 PassInput& p) {
  sim::TraceConfig t;
  t.seed = seed;
  t.jobs = cluster.nodes * 12;
  t.users = Users(20);
  t.no_limit_fraction = 0;
  t.dependency_fraction = 0;
  const sim::Trace trace = sim::GenerateTrace(cluster, t);
  std::mt19937_64 rng(seed);
  core::FreeCapacity free(p.nodes);
  const auto target = static_cast<int64_t>(free_fraction * static_cast<double>(free.TotalFree().slots));
  for (const sim::SimJob& s : trace.jobs) {
    if (free.TotalFree().slots <= target) break;
    auto shares = free.Place(s.request);
    if (!shares) continue;
    free.Take(*shares, s.request);
    core::RunningJob r;
    r.id = 1'000'000'000 + s.id;
    r.user = s.user;
    r.request = s.request;
    r.shares = std::move(*shares);
    const double left = 0.05 + 0.95 * static_cast<double>(rng() >> 11) * 0x1.0p-53;
    r.end_by = kNow + std::max<Millis>(sim::kMinute,
                                       static_cast<Millis>(left * static_cast<double>(s.time_limit_ms)));
    p.running.push_back(std::move(r));
  }
  sim::ViolationLog log;
  sim::RebuildUsage(p.nodes, p.running, log);
}

PassInput MakePassInput(const Options& o, bool busy) {
  const sim::ClusterConfig cluster = BenchCluster(o.pass_nodes);
  PassInput p;
  p.nodes = sim::BuildNodes(cluster);
  p.jobs = PendingJobs(cluster, o.pass_jobs, o.seed);
  std::mt19937_64 rng(o.seed + 7);
  for (const auto& u : Users(20)) {
    p.users.push_back({u.name, static_cast<double>(rng() % 1'000'000), u.weight});
  }
  if (busy) FillCluster(cluster, 0.03, o.seed + 1, p);
  return p;
}

// Median wall ms of `runs` calls of `f`, after one warm-up call.
double MedianMs(int runs, const std::function<void()>& f) {
  f();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The baseline: each job in queue order goes on the first node, scanning from node 0, that fits
// it whole; no index, no memo, no gangs across nodes, no reservation. Returns the jobs started.
int64_t NaivePass(const std::vector<core::NodeState>& nodes,
                  const std::vector<core::QueuedJob>& queue) {
  struct Free {
    int64_t slots, memory, gpus;
    bool up;
  };
  std::vector<Free> free(nodes.size());
  for (size_t n = 0; n < nodes.size(); ++n) {
    const core::NodeState& node = nodes[n];
    free[n] = {node.slots - node.used_slots, node.memory_bytes - node.used_memory,
               node.gpus - core::PopCount(node.used_gpu_mask),
               node.availability == core::NodeAvailability::kUp};
  }
  int64_t started = 0;
  for (const core::QueuedJob& j : queue) {
    const core::ResourceRequest& r = j.request;
    const int64_t slots = r.ranks * std::max<int64_t>(1, r.cpus_per_rank);
    const int64_t gpus = r.Gpus(), memory = r.Memory();
    for (size_t n = 0; n < free.size(); ++n) {
      Free& f = free[n];
      if (!f.up || f.slots < slots || f.gpus < gpus || f.memory < memory) continue;
      if (!r.labels.empty() && !core::HasAllLabels(nodes[n].labels, r.labels)) continue;
      f.slots -= slots;
      f.gpus -= gpus;
      f.memory -= memory;
      ++started;
      break;
    }
  }
  return started;
}

struct PassTiming {
  double policy_ms = 0;
  double naive_ms = 0;
  size_t starts = 0;
  int64_t naive_starts = 0;
  std::optional<core::Reservation> reservation;
};

PassTiming TimePasses(const PassInput& p, int runs) {
  PassTiming t;
  const core::SchedulingInput in = p.Input();
  core::SchedulingPlan plan;
  t.policy_ms = MedianMs(runs, [&] { plan = core::PlanPass(in); });
  t.starts = plan.starts.size();
  t.reservation = plan.reservation;
  t.naive_ms = MedianMs(runs, [&] { t.naive_starts = NaivePass(p.nodes, p.jobs); });
  return t;
}

void PrintPass(const char* what, const PassInput& p, const PassTiming& t) {
  int64_t free_slots = 0, slots = 0;
  for (const auto& n : p.nodes) {
    slots += n.slots;
    free_slots += n.slots - n.used_slots;
  }
  std::printf("%s: %zu nodes (%lld of %lld slots free), %zu running, %zu pending\n", what,
              p.nodes.size(), static_cast<long long>(free_slots), static_cast<long long>(slots),
              p.running.size(), p.jobs.size());
  std::printf("  PlanPass: %.2f ms (median), %zu started", t.policy_ms, t.starts);
  if (t.reservation) {
    std::printf(", job %lld reserved %s", static_cast<long long>(t.reservation->job_id),
                t.reservation->start_at < 0
                    ? "(start unknown)"
                    : ("to start in " +
                       std::to_string((t.reservation->start_at - kNow) / sim::kMinute) + " min")
                          .c_str());
  }
  std::printf("\n  naive first-fit: %.2f ms (median), %lld started; PlanPass / naive = %.3f\n",
              t.naive_ms, static_cast<long long>(t.naive_starts),
              t.naive_ms > 0 ? t.policy_ms / t.naive_ms : 0.0);
}

// How many distinct request shapes the queue holds: the policy classifies each shape once a pass.
void PrintShapes(const PassInput& p) {
  std::unordered_set<core::ResourceRequest, core::ResourceRequestHash> shapes;
  for (const auto& j : p.jobs) shapes.insert(j.request);
  std::printf("  %zu distinct request shapes in the queue\n", shapes.size());
}

sim::SimResult RunSimulation(const Options& o) {
  sim::ClusterConfig cluster = BenchCluster(o.sim_nodes);
  cluster.drained_nodes = o.sim_nodes / 100;
  sim::TraceConfig t;
  t.seed = o.seed;
  t.jobs = o.sim_jobs;
  t.users = Users(20);
  t.load = 1.2;
  return sim::Simulate(cluster, sim::GenerateTrace(cluster, t));
}

// The start-time estimator against what happened: a trace on its own (smaller) cluster, each
// job's first estimate compared with its start. Jobs run for a random part of their time limit,
// so an estimate built from limits is late by design; it is an upper bound.
sim::SimResult RunEstimateSimulation(const Options& o, bool from_progress) {
  sim::ClusterConfig cluster = BenchCluster(o.sim_nodes / 4);
  sim::TraceConfig t;
  t.seed = o.seed + 1;
  t.jobs = o.sim_jobs / 5;
  t.users = Users(20);
  t.load = 1.2;
  sim::SimOptions options;
  options.estimate_starts = true;
  options.estimate_from_progress = from_progress;
  return sim::Simulate(cluster, sim::GenerateTrace(cluster, t), options);
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

void PrintSimulation(const Options& o, const sim::SimResult& r, double wall_s) {
  std::printf("simulation: %d nodes, %lld jobs in %.1f s wall: %lld completed, %lld failed, "
              "%lld violations\n",
              o.sim_nodes, static_cast<long long>(r.jobs), wall_s,
              static_cast<long long>(r.jobs_completed), static_cast<long long>(r.jobs_failed),
              static_cast<long long>(r.violation_count));
  std::printf("  makespan %.1f h, wait mean %.0f s max %.0f s, utilisation %.1f%% slots %.1f%% "
              "GPUs, %lld backfilled\n",
              static_cast<double>(r.makespan_ms) / sim::kHour, r.mean_wait_s, r.max_wait_s,
              100 * r.utilisation, 100 * r.gpu_utilisation, static_cast<long long>(r.backfilled));
  std::printf("  %lld passes (queue up to %lld): PlanPass total %.0f ms, mean %.3f ms, max %.2f ms\n",
              static_cast<long long>(r.passes), static_cast<long long>(r.max_queue),
              r.total_pass_ms, r.passes > 0 ? r.total_pass_ms / static_cast<double>(r.passes) : 0.0,
              r.max_pass_ms);
  for (size_t i = 0; i < r.violations.size() && i < 20; ++i) {
    std::printf("  violation: %s\n", r.violations[i].c_str());
  }
}

// A JSON number, or null when not finite.
std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void PrintMeasure(const std::string& measure, double value, const char* unit,
                  std::optional<double> baseline, double target) {
  const std::string base = baseline ? Number(*baseline) : "null";
  const std::string ratio = baseline && *baseline > 0 ? Number(value / *baseline) : "null";
  std::printf("{\"bench\": \"scheduler\", \"measure\": \"%s\", \"value\": %s, \"unit\": \"%s\", "
              "\"baseline\": %s, \"ratio\": %s, \"target\": %s, \"met\": %s}\n",
              measure.c_str(), Number(value).c_str(), unit, base.c_str(), ratio.c_str(),
              Number(target).c_str(), value <= target ? "true" : "false");
}

// A reported figure without a target.
void PrintReport(const std::string& measure, double value, const char* unit, double baseline) {
  std::printf(
      "{\"bench\": \"scheduler\", \"measure\": \"%s\", \"value\": %s, \"unit\": "
      "\"%s\", \"baseline\": %s, \"ratio\": %s, \"target\": null, \"met\": null}\n",
      measure.c_str(), Number(value).c_str(), unit, Number(baseline).c_str(),
      baseline > 0 ? Number(value / baseline).c_str() : "null");
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = ParseArgs(argc, argv);
  if (!options) return 2;
  const Options& o = *options;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows when piped: the run takes minutes

  PassTiming steady, cold;
  {
    const PassInput busy = MakePassInput(o, true);
    steady = TimePasses(busy, o.runs);
    PrintPass("steady state", busy, steady);
    PrintShapes(busy);
  }
  {
    const PassInput empty = MakePassInput(o, false);
    cold = TimePasses(empty, o.runs);
    PrintPass("cold start", empty, cold);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const sim::SimResult sim = RunSimulation(o);
  const double sim_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  PrintSimulation(o, sim, sim_s);

  const sim::SimResult est = RunEstimateSimulation(o, false);
  const sim::SimResult est_progress = RunEstimateSimulation(o, true);
  const double p50 = Percentile(est.estimate_errors_s, 0.5);
  const double p90 = Percentile(est.estimate_errors_s, 0.9);
  const double p50_progress = Percentile(est_progress.estimate_errors_s, 0.5);
  const double p90_progress = Percentile(est_progress.estimate_errors_s, 0.9);
  for (const auto* r : {&est, &est_progress}) {
    std::printf(
        "start estimates (%s): %zu jobs waited with a known estimate, %lld unknown; "
        "|estimated - actual start| p50 %.0f s, p90 %.0f s (mean wait %.0f s); %.1f ms "
        "estimating over %lld passes\n",
        r == &est ? "time limits" : "time limits and progress", r->estimate_errors_s.size(),
        static_cast<long long>(r->estimates_unknown), Percentile(r->estimate_errors_s, 0.5),
        Percentile(r->estimate_errors_s, 0.9), r->mean_wait_s, r->estimate_ms,
        static_cast<long long>(r->passes));
  }

  const std::string size = Count(o.pass_nodes) + "_nodes_" + Count(o.pass_jobs) + "_jobs_ms";
  PrintMeasure("pass_" + size, steady.policy_ms, "ms", steady.naive_ms, 50);
  PrintMeasure("pass_cold_" + size, cold.policy_ms, "ms", cold.naive_ms, 50);
  PrintMeasure("simulation_violations", static_cast<double>(sim.violation_count), "count",
               std::nullopt, 0);
  // Baseline: the mean wait, so the ratio says how large the error is next to the wait itself.
  PrintReport("start_estimate_error_p50_s", p50, "s", est.mean_wait_s);
  PrintReport("start_estimate_error_p90_s", p90, "s", est.mean_wait_s);
  PrintReport("start_estimate_error_p50_s_with_progress", p50_progress, "s",
              est_progress.mean_wait_s);
  PrintReport("start_estimate_error_p90_s_with_progress", p90_progress, "s",
              est_progress.mean_wait_s);
  PrintMeasure("estimate_ms_per_pass",
               est.passes > 0 ? est.estimate_ms / static_cast<double>(est.passes) : 0, "ms",
               est.passes > 0 ? est.total_pass_ms / static_cast<double>(est.passes) : 0, 50);
  return 0;
}
