#include "scheduler/core/resources.h"

#include <algorithm>
#include <functional>

namespace kiln::core {

size_t ResourceRequestHash::operator()(const ResourceRequest& r) const {
  size_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(static_cast<uint64_t>(r.ranks));
  mix(static_cast<uint64_t>(r.cpus_per_rank));
  mix(static_cast<uint64_t>(r.gpus_per_rank));
  mix(static_cast<uint64_t>(r.memory_per_rank));
  mix(static_cast<uint64_t>(r.ranks_per_node));
  mix(r.spread ? 1 : 0);
  for (const auto& l : r.labels) mix(std::hash<std::string>{}(l));
  return h;
}

bool HasAllLabels(const std::vector<std::string>& node_labels,
                  const std::vector<std::string>& wanted) {
  return std::includes(node_labels.begin(), node_labels.end(), wanted.begin(), wanted.end());
}

int PopCount(uint64_t mask) { return __builtin_popcountll(mask); }

std::vector<int> LowestFreeGpus(uint64_t used_mask, int gpus, int64_t count) {
  std::vector<int> ids;
  for (int i = 0; i < gpus && i < kMaxGpusPerNode && static_cast<int64_t>(ids.size()) < count; ++i) {
    if ((used_mask & (uint64_t{1} << i)) == 0) ids.push_back(i);
  }
  return ids;
}

uint64_t GpuMask(const std::vector<int>& ids) {
  uint64_t mask = 0;
  for (int i : ids) {
    if (i >= 0 && i < kMaxGpusPerNode) mask |= uint64_t{1} << i;
  }
  return mask;
}

}  // namespace kiln::core
