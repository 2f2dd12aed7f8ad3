// One scheduling pass: cluster + queue + now in, a plan out. Pure: no sockets, files or clock.
//
// Order: higher priority first; within a priority, fair share (the user with the least usage per
// unit of weight goes first, and each job started in the pass charges its user its commitment, so
// users interleave); then submission order.
//
// Walking that order, a job starts if its gang fits the free resources (gang_placement.h). The
// first job that does not fit (and is not held, waiting on a dependency, or infeasible) gets a
// reservation: the earliest time its gang fits once running jobs end at their time limits, and
// the nodes it would use then (EASY backfill). Later jobs may start before it only if they cannot
// delay it: either they have a time limit and end before the reserved start, or they use only
// resources the reservation does not need. If the reserved start cannot be known (jobs without a
// time limit hold what it needs), nothing else may use the nodes it could run on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "scheduler/core/fair_share.h"
#include "scheduler/core/gang_placement.h"
#include "scheduler/core/job_state.h"
#include "scheduler/core/resources.h"

namespace kiln::core {

struct QueuedJob {
  int64_t id = 0;  // ids grow with submission
  int32_t user = 0;  // index into SchedulingInput::users
  int64_t priority = 0;
  ResourceRequest request;
  Millis time_limit_ms = 0;  // 0: none
  bool held = false;
  std::vector<int64_t> depends_on;  // after-ok: each must COMPLETE first
  // How many gangs of this shape may start from this entry in one pass (>= 1): an array's
  // pending tasks, at most its limit of running tasks. Each start is its own JobStart.
  int64_t tasks = 1;
};

struct RunningJob {
  int64_t id = 0;
  int32_t user = 0;
  ResourceRequest request;
  std::vector<NodeShare> shares;  // with GPU ids
  Millis end_by = 0;              // start + time limit (wall ms); 0: no limit
};

struct UserShare {
  std::string name;
  double usage = 0;   // decayed usage including running jobs' charges (FairShareLedger)
  double weight = 1;  // > 0
  // The admin's quotas (0: no limit): ranks and GPUs the user's running jobs may hold at once.
  // A job that would take the user past one waits (WaitKind::kQuota) and reserves nothing.
  int64_t max_running_ranks = 0;
  int64_t max_gpus = 0;
};

struct SchedulingInput {
  const std::vector<NodeState>* nodes = nullptr;
  const std::vector<RunningJob>* running = nullptr;
  // PENDING jobs ordered by priority (highest first), then id.
  std::vector<const QueuedJob*> queue;
  const std::vector<UserShare>* users = nullptr;
  // States of the jobs that queued jobs depend on; an id missing here counts as failed.
  const std::unordered_map<int64_t, JobState>* dependencies = nullptr;
  Millis now = 0;
  UsageUnit usage_unit = UsageUnit::kRankSeconds;
  double commitment_s = 0;  // a job started now charges its user rate × this (the mean life)
  bool backfill = true;
};

enum class WaitKind : uint8_t {
  kHeld,
  kDependency,
  kInfeasible,
  kNoWorkers,
  kResources,
  kPriority,
  kFairShare,
  kReserved,
  kQuota
};
const char* WaitKindName(WaitKind kind);

struct JobStart {
  int64_t job_id = 0;
  std::vector<NodeShare> shares;  // with GPU ids
  bool backfilled = false;        // started ahead of the reservation holder
};

struct JobWait {
  int64_t job_id = 0;
  WaitKind kind = WaitKind::kResources;
  uint32_t reason = 0;  // index into SchedulingPlan::reasons
};

struct JobFailure {
  int64_t job_id = 0;
  std::string reason;
};

struct Reservation {
  int64_t job_id = 0;
  Millis start_at = -1;  // -1: unknown (needs resources held by jobs without a time limit)
  std::vector<NodeShare> shares;
};

struct SchedulingPlan {
  std::vector<JobStart> starts;      // in the order they were decided
  std::vector<JobWait> waits;
  std::vector<JobFailure> failures;  // a dependency failed: the job can never run
  std::vector<std::string> reasons;  // shared by waits
  std::optional<Reservation> reservation;

  const std::string& ReasonOf(const JobWait& w) const { return reasons[w.reason]; }
};

// Every queued job appears exactly once in starts, waits or failures; except that an entry with
// tasks > 1 may start several times, and then wait (once) if not all of its tasks started.
SchedulingPlan PlanPass(const SchedulingInput& in);

// Running jobs whose time limit has passed at `now`.
std::vector<int64_t> TimedOut(const std::vector<RunningJob>& running, Millis now);

// The units a job charges per second of running: ranks, or GPUs.
double UsageRate(const ResourceRequest& r, UsageUnit unit);

}  // namespace kiln::core
