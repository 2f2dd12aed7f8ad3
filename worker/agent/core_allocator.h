// Which CPUs of this node each attempt's ranks are pinned to. The agent hands every attempt that
// runs only here ranks × cpus_per_rank distinct CPUs, lowest ids first, when that many are free;
// otherwise (more ranks than free CPUs: an oversubscribed node) the attempt is not pinned and
// shares the node's CPUs, as before. Pure: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace kiln::agent {

class CoreAllocator {
 public:
  // `cpus`: the ids this agent may use (its own affinity mask).
  explicit CoreAllocator(std::vector<int> cpus);

  using Key = std::pair<int64_t, int64_t>;  // job, attempt
  // `count` free CPUs for the attempt, in id order; empty (and nothing taken) when fewer are free.
  std::vector<int> Take(const Key& key, int64_t count);
  void Release(const Key& key);
  size_t free_count() const { return free_.size(); }

 private:
  std::set<int> free_;
  std::map<Key, std::vector<int>> taken_;
};

// The agent's own CPU ids (sched_getaffinity), in order.
std::vector<int> AllowedCpus();

}  // namespace kiln::agent
