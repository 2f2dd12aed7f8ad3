// Which checkpoints of a job to delete. Pure.
// Kept: the `keep_last` newest; the `keep_best` best by `metric` (max or min; checkpoints without
// the metric never count as best); and every protected step (one an attempt resumes or will
// resume from). Everything else goes.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::core {

struct RetentionPolicy {
  int keep_last = 3;
  int keep_best = 0;
  bool maximize = true;
};

struct RetainedCheckpoint {
  int64_t step = 0;
  std::optional<double> metric;  // the policy's metric at this checkpoint, if reported
};

// `checkpoints` in any order; returns the steps to delete, ascending.
std::vector<int64_t> CheckpointsToDelete(const std::vector<RetainedCheckpoint>& checkpoints,
                                         const RetentionPolicy& policy,
                                         const std::set<int64_t>& protected_steps);

// The step of the best checkpoint by metric, or nullopt when none reported it.
std::optional<int64_t> BestCheckpoint(const std::vector<RetainedCheckpoint>& checkpoints,
                                      bool maximize);

}  // namespace kiln::core
