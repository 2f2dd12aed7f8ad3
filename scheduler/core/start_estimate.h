// When will each waiting job start? A shadow schedule of the queue, recomputed after each pass.
// Pure: no I/O, no clock.
//
// Running jobs end at their expected end (from their time limit, or their progress rate, the
// earlier); those with neither never end here. Waiting jobs are taken in the order the policy
// considered them, each at the earliest time the cluster, as running jobs end and earlier waiting
// jobs start, has room for its gang: a time cursor moves forward through the ends, and a job that
// fits at the cursor starts there even if jobs ahead of it wait longer (backfill at the cursor; a
// job is never placed before the cursor, so estimates behind a long wait are upper bounds). A job
// started here ends at its time limit; without one it holds its resources to the end of the
// schedule. Held jobs and jobs waiting for a dependency take nothing and get no estimate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"
#include "scheduler/core/gang_placement.h"
#include "scheduler/core/resources.h"

namespace kiln::core {

struct EstimateRunning {
  int64_t id = 0;
  ResourceRequest request;
  std::vector<NodeShare> shares;  // with GPU ids
  Millis ends_at = 0;             // expected end (wall ms); 0: unknown
};

struct EstimateWaiting {
  int64_t id = 0;
  ResourceRequest request;
  Millis time_limit_ms = 0;  // 0: none
  bool blocked = false;      // held, or waiting for a dependency: not estimated
};

struct StartEstimate {
  int64_t job_id = 0;
  Millis at = -1;              // -1: unknown (blocked, or needs what jobs without an end hold)
  std::vector<int64_t> after;  // running (or estimated) jobs whose ends make room for it
  std::vector<int32_t> nodes;  // where, by index into the nodes
};

// `nodes` as they are after the pass (running jobs' use in their used_* fields). At most
// `max_jobs` of `waiting` are estimated (the rest are left out of the result).
std::vector<StartEstimate> EstimateStarts(const std::vector<NodeState>& nodes,
                                          const std::vector<EstimateRunning>& running,
                                          const std::vector<EstimateWaiting>& waiting, Millis now,
                                          size_t max_jobs);

// A running job's expected end from its progress: `step` of `total_steps` done at `step_at`,
// `first_step` at `first_at` (this attempt's first report); 0 when it cannot tell (no steps done
// since its first report).
Millis ExpectedEndFromProgress(int64_t first_step, Millis first_at, int64_t step, Millis step_at,
                               int64_t total_steps);

}  // namespace kiln::core
