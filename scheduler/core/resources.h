// What jobs ask for and what nodes offer, as the scheduling policy sees them. Pure data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::core {

// A job's gang: `ranks` processes, each needing the per-rank amounts on the node it runs on.
struct ResourceRequest {
  int64_t ranks = 1;
  int64_t cpus_per_rank = 1;    // slots per rank
  int64_t gpus_per_rank = 0;
  int64_t memory_per_rank = 0;  // bytes; 0: not accounted
  int64_t ranks_per_node = 0;   // 0: any split; else exactly this many ranks on each node used
  bool spread = false;          // false: fewest nodes (pack); true: as many nodes as possible
  std::vector<std::string> labels;  // sorted; a node must carry every one

  int64_t Slots() const { return ranks * cpus_per_rank; }
  int64_t Gpus() const { return ranks * gpus_per_rank; }
  int64_t Memory() const { return ranks * memory_per_rank; }
  bool operator==(const ResourceRequest& o) const {
    return ranks == o.ranks && cpus_per_rank == o.cpus_per_rank &&
           gpus_per_rank == o.gpus_per_rank && memory_per_rank == o.memory_per_rank &&
           ranks_per_node == o.ranks_per_node && spread == o.spread && labels == o.labels;
  }
};

struct ResourceRequestHash {
  size_t operator()(const ResourceRequest& r) const;
};

enum class NodeAvailability { kUp, kDrained, kDown };

constexpr int kMaxGpusPerNode = 64;  // GPU ids are bits of a 64-bit mask

struct NodeState {
  std::string name;
  NodeAvailability availability = NodeAvailability::kUp;
  int64_t slots = 0;
  int64_t memory_bytes = 0;
  int gpus = 0;                     // ids 0..gpus-1
  std::vector<std::string> labels;  // sorted
  // Whether the node may host part of a gang spread over several nodes: the others can reach
  // it. A node that cannot still takes gangs that fit on it whole.
  bool joins_gangs = true;
  // Held by running attempts (filled by the caller from its running jobs).
  int64_t used_slots = 0;
  int64_t used_memory = 0;
  uint64_t used_gpu_mask = 0;  // bit i: GPU i is in use
};

// A job's part of one node: how many of its ranks run there and which GPUs they get
// (gpus_per_rank ids per rank, in rank order).
struct NodeShare {
  int32_t node = 0;  // index into the node list the plan was made from
  int64_t ranks = 0;
  std::vector<int> gpu_ids;
  bool operator==(const NodeShare& o) const {
    return node == o.node && ranks == o.ranks && gpu_ids == o.gpu_ids;
  }
};

bool HasAllLabels(const std::vector<std::string>& node_labels,
                  const std::vector<std::string>& wanted);
int PopCount(uint64_t mask);
// The lowest `count` free ids of `used_mask` on a node with `gpus` GPUs (fewer if not enough).
std::vector<int> LowestFreeGpus(uint64_t used_mask, int gpus, int64_t count);
uint64_t GpuMask(const std::vector<int>& ids);

}  // namespace kiln::core
