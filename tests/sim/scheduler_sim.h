// A discrete-event simulator that drives the real scheduling policy (core::PlanPass) over a
// synthetic cluster and job trace on a simulated clock, and checks the policy's invariants after
// every pass:
//   (a) nothing is given twice: per node, running ranks × slots per rank fit its slots, memory fits,
//       and the GPU ids of running jobs are disjoint and below the node's GPU count;
//   (b) gangs are all-or-nothing: a start's shares add up to the job's ranks, each on a distinct up
//       node carrying all the job's labels, with ranks_per_node ranks on each when it is set, and
//       gpus_per_rank GPU ids per rank;
//   (c) backfill never delays the blocked head: the reservation still fits at its start once the
//       pass's starts are counted; while one job holds the reservation its known start never moves
//       later (unless jobs ordered ahead of it started in that pass); it starts no later than the
//       start it was last reserved;
//   (d) nobody starves: every job completes (the SimResult also gives each user's rank-seconds over
//       a window, for fair-share ratios).
// Also: every queued job appears exactly once in a plan, started jobs had their dependencies
// completed, and no job fails (nothing in a simulation can make a dependency fail).
//
// Deterministic for a given trace. The only real clock read is the wall time around PlanPass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"
#include "scheduler/core/scheduling_policy.h"

namespace kiln::sim {

constexpr Millis kSecond = 1000;
constexpr Millis kMinute = 60 * kSecond;
constexpr Millis kHour = 60 * kMinute;

// A synthetic cluster. GPU nodes are the first round(gpu_node_fraction × nodes) nodes; every
// `label_stride`-th node carries "ib" and every other one of those also "nvme"; the last
// `drained_nodes` nodes are drained.
struct ClusterConfig {
  int nodes = 200;
  int64_t slots_per_node = 64;
  int64_t memory_per_node = 256ll << 30;
  double gpu_node_fraction = 0.2;
  int gpus_per_node = 8;
  int label_stride = 4;  // 0: no labels
  int drained_nodes = 0;
};

std::vector<core::NodeState> BuildNodes(const ClusterConfig& cluster);

struct UserSpec {
  std::string name;
  double weight = 1;    // fair-share weight
  double activity = 1;  // relative share of a generated trace's jobs
};

// What GenerateTrace draws. Fractions are probabilities per job.
struct TraceConfig {
  uint64_t seed = 1;
  int jobs = 2000;
  std::vector<UserSpec> users = {
      {"alice", 1, 1}, {"bob", 2, 1}, {"carol", 1, 2}, {"dave", 1, 0.5}};
  // Offered work over the submission span, as a fraction of the cluster's capacity of its most
  // loaded resource (slots or GPUs). Above 1 the queue grows while jobs arrive.
  double load = 1.0;
  int max_ranks = 64;              // single-rank-size draws stay within 1..max_ranks
  double gpu_fraction = 0.15;      // jobs asking for GPUs (if the cluster has GPU nodes)
  double multi_node_fraction = 0.08;  // gangs wider than one node
  double ranks_per_node_fraction = 0.1;
  double spread_fraction = 0.05;
  double label_fraction = 0.08;
  double memory_fraction = 0.2;
  double priority_fraction = 0.12;  // jobs with priority 1..3 (others 0)
  double no_limit_fraction = 0.03;  // jobs without a time limit
  double dependency_fraction = 0.03;  // jobs that depend on one or two recent earlier jobs
  Millis min_limit_ms = 5 * kMinute;
  Millis max_limit_ms = 4 * kHour;
  Millis start_ms = 1'700'000'000'000;  // first possible submission (wall ms)
};

struct SimJob {
  int64_t id = 0;  // 1-based index in Trace::jobs
  int32_t user = 0;  // index into Trace::users
  int64_t priority = 0;
  core::ResourceRequest request;
  Millis submit_at = 0;
  Millis time_limit_ms = 0;  // 0: none
  Millis runtime_ms = 0;     // how long it runs once started; <= time_limit_ms when one is set
  std::vector<int64_t> depends_on;  // earlier jobs (after-ok)
};

// Simulate checks the contract: jobs[i].id == i + 1, submit_at non-decreasing, every user an
// index into `users`, every dependency an earlier id.
struct Trace {
  std::vector<UserSpec> users;
  std::vector<SimJob> jobs;
};

// A seeded random trace whose every request is feasible on BuildNodes(cluster).
Trace GenerateTrace(const ClusterConfig& cluster, const TraceConfig& config);

// Every user in `users` submits the same stream: each job of `stream` is copied once per user, at
// the same time, with interleaved ids (the first user's copy first). Dependencies stay within a
// user's copy.
Trace IdenticalStreams(const Trace& stream, const std::vector<UserSpec>& users);

struct SimOptions {
  bool backfill = true;
  double half_life_s = 2 * 3600.0;  // fair-share decay
  core::UsageUnit usage_unit = core::UsageUnit::kRankSeconds;
  // SimResult::user_rank_seconds is measured over [window_begin, window_end]; when window_end is
  // 0, from the first submission to the last.
  Millis window_begin = 0;
  Millis window_end = 0;
  // Estimate each job's start the first pass it waits (core/start_estimate.h) and measure the
  // error when it starts (SimResult::estimate_errors_s).
  bool estimate_starts = false;
  // Running jobs end, for the estimate, when they really do (as a steady progress rate predicts)
  // instead of at their time limits.
  bool estimate_from_progress = false;
};

struct SimResult {
  std::vector<std::string> violations;  // the first kMaxViolationMessages
  int64_t violation_count = 0;          // all of them
  int64_t jobs = 0;
  int64_t jobs_completed = 0;
  int64_t jobs_failed = 0;
  int64_t backfilled = 0;  // starts decided ahead of a reservation holder
  Millis makespan_ms = 0;  // first submission to last completion
  double mean_wait_s = 0;  // submission to start, over started jobs
  double max_wait_s = 0;
  double utilisation = 0;      // slot-seconds used / (slots of up nodes × makespan)
  double gpu_utilisation = 0;  // the same for GPUs (0 without GPUs)
  int64_t passes = 0;
  int64_t max_queue = 0;  // the longest queue handed to one pass
  double total_pass_ms = 0;  // wall time spent inside core::PlanPass
  double max_pass_ms = 0;
  std::vector<double> user_rank_seconds;  // by trace user, over the SimOptions window
  // With SimOptions::estimate_starts: |estimated - actual start| in seconds, per job that had a
  // known estimate; how many started with an unknown one; time spent estimating.
  std::vector<double> estimate_errors_s;
  int64_t estimates_unknown = 0;
  double estimate_ms = 0;
};

constexpr size_t kMaxViolationMessages = 100;

SimResult Simulate(const ClusterConfig& cluster, const Trace& trace, const SimOptions& options = {});

// ---- Invariant checks, exposed so they can be tested on hand-made states. -----------------------

// Collects violation messages: keeps the first kMaxViolationMessages, counts all.
class ViolationLog {
 public:
  void Add(std::string message);
  int64_t count() const { return count_; }
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  int64_t count_ = 0;
  std::vector<std::string> messages_;
};

// Sets the used_* fields of `nodes` to what `running` holds, logging (a) violations.
void RebuildUsage(std::vector<core::NodeState>& nodes, const std::vector<core::RunningJob>& running,
                  ViolationLog& log);

// Logs (b) violations of one start of a job asking for `request`.
void CheckGang(const std::vector<core::NodeState>& nodes, const core::ResourceRequest& request,
               const core::JobStart& start, ViolationLog& log);

// Logs a violation if `reservation` (for a job asking for `request`), with a known start, does not
// fit at its start on what `running` (all jobs, the pass's starts included, with their end_by)
// still holds then.
void CheckReservationFits(const std::vector<core::NodeState>& nodes,
                          const std::vector<core::RunningJob>& running,
                          const core::Reservation& reservation,
                          const core::ResourceRequest& request, ViolationLog& log);

}  // namespace kiln::sim
