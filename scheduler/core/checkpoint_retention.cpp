#include "scheduler/core/checkpoint_retention.h"

#include <algorithm>

namespace kiln::core {

namespace {

// Better first; ties go to the later step (a newer checkpoint of equal quality is preferred).
std::vector<RetainedCheckpoint> ByQuality(const std::vector<RetainedCheckpoint>& checkpoints,
                                          bool maximize) {
  std::vector<RetainedCheckpoint> ranked;
  for (const auto& c : checkpoints) {
    if (c.metric) ranked.push_back(c);
  }
  std::sort(ranked.begin(), ranked.end(), [maximize](const auto& a, const auto& b) {
    if (*a.metric != *b.metric) return maximize ? *a.metric > *b.metric : *a.metric < *b.metric;
    return a.step > b.step;
  });
  return ranked;
}

}  // namespace

std::vector<int64_t> CheckpointsToDelete(const std::vector<RetainedCheckpoint>& checkpoints,
                                         const RetentionPolicy& policy,
                                         const std::set<int64_t>& protected_steps) {
  std::set<int64_t> keep = protected_steps;
  std::vector<int64_t> steps;
  for (const auto& c : checkpoints) steps.push_back(c.step);
  std::sort(steps.begin(), steps.end(), std::greater<>());
  for (size_t i = 0; i < steps.size() && i < static_cast<size_t>(std::max(0, policy.keep_last)); ++i) {
    keep.insert(steps[i]);
  }
  auto ranked = ByQuality(checkpoints, policy.maximize);
  for (size_t i = 0; i < ranked.size() && i < static_cast<size_t>(std::max(0, policy.keep_best)); ++i) {
    keep.insert(ranked[i].step);
  }
  std::vector<int64_t> drop;
  for (int64_t step : steps) {
    if (keep.count(step) == 0) drop.push_back(step);
  }
  std::sort(drop.begin(), drop.end());
  return drop;
}

std::optional<int64_t> BestCheckpoint(const std::vector<RetainedCheckpoint>& checkpoints,
                                      bool maximize) {
  auto ranked = ByQuality(checkpoints, maximize);
  if (ranked.empty()) return std::nullopt;
  return ranked.front().step;
}

}  // namespace kiln::core
