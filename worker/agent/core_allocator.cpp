#include "worker/agent/core_allocator.h"

#include <sched.h>

namespace kiln::agent {

CoreAllocator::CoreAllocator(std::vector<int> cpus) : free_(cpus.begin(), cpus.end()) {}

std::vector<int> CoreAllocator::Take(const Key& key, int64_t count) {
  if (count <= 0 || static_cast<size_t>(count) > free_.size() || taken_.count(key) > 0) return {};
  std::vector<int> cpus;
  for (auto it = free_.begin(); static_cast<int64_t>(cpus.size()) < count;) {
    cpus.push_back(*it);
    it = free_.erase(it);
  }
  taken_[key] = cpus;
  return cpus;
}

void CoreAllocator::Release(const Key& key) {
  auto it = taken_.find(key);
  if (it == taken_.end()) return;
  free_.insert(it->second.begin(), it->second.end());
  taken_.erase(it);
}

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace kiln::agent
