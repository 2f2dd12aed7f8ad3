// Free resources of a cluster during one scheduling pass, and gang placement on them. Pure.
//
// A gang is placed whole or not at all. Default (pack): one node if any fits the whole job (the
// tightest such node, keeping big holes for big jobs), else the fewest nodes, largest free first,
// with the remainder on the tightest node that holds it. `spread`: one rank per node on as many
// nodes as possible, most free first. `ranks_per_node` k: exactly k ranks on each of ranks/k nodes.
// A node whose NodeState::joins_gangs is false takes only gangs it holds whole.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/core/resources.h"

namespace kiln::core {

struct Amount {
  int64_t slots = 0;
  int64_t gpus = 0;
  int64_t memory = 0;
};

class FreeCapacity {
 public:
  // `nodes` must outlive this object. Only kUp nodes offer anything; their used_* fields are
  // subtracted from what they have.
  explicit FreeCapacity(const std::vector<NodeState>& nodes);

  // Ranks of `r` node n could host now, less `held` of its free amounts.
  int64_t RanksFit(int32_t n, const ResourceRequest& r, const Amount& held = {}) const;
  // A placement of every rank of `r`, or nothing. `holdback`, when given, is indexed by node and
  // is subtracted from what each node offers (a reservation's claim). Shares come without GPU ids.
  std::optional<std::vector<NodeShare>> Place(const ResourceRequest& r,
                                              const std::vector<Amount>* holdback = nullptr) const;
  // Takes a placement's resources, assigning the lowest free GPU ids to shares that have none.
  void Take(std::vector<NodeShare>& shares, const ResourceRequest& r);
  // Returns resources (a running job ending); shares must carry their GPU ids.
  void Give(const std::vector<NodeShare>& shares, const ResourceRequest& r);

  Amount Free(int32_t n) const;
  const Amount& TotalFree() const { return total_free_; }
  const std::vector<NodeState>& nodes() const { return *nodes_; }

 private:
  struct Free_ {
    int64_t slots = 0;
    int64_t memory = 0;
    uint64_t gpu_mask = 0;  // used ids
    int64_t free_gpus = 0;  // GPUs of the node not in gpu_mask
    bool usable = false;
  };
  using Index = std::set<std::pair<int64_t, int32_t>>;  // (free amount, node)

  int64_t FreeGpus(int32_t n) const;
  void Unindex(int32_t n);
  void Reindex(int32_t n);
  // Index ordering nodes by the resource that limits r: free GPUs for GPU jobs, else free slots;
  // and how much of that resource one rank needs.
  std::pair<const Index*, int64_t> IndexFor(const ResourceRequest& r) const;

  const std::vector<NodeState>* nodes_;
  std::vector<Free_> free_;
  Amount total_free_;
  Index by_slots_;
  Index by_gpus_;  // nodes with GPUs only
};

// Up nodes of one size and label set, and how many there are: clusters have few such classes,
// so per-job questions about the whole cluster cost O(classes), not O(nodes).
struct NodeClass {
  int64_t slots = 0;
  int64_t memory = 0;
  int64_t gpus = 0;
  std::vector<std::string> labels;
  int64_t count = 0;
};
std::vector<NodeClass> UpNodeClasses(const std::vector<NodeState>& nodes);

// Why `r` can never run on these nodes as they are (up nodes at full capacity), e.g.
// "Infeasible: needs 8 GPUs on one node, largest has 4"; nullopt when it could.
// No up node at all is not infeasible (workers come and go) and also yields nullopt.
std::optional<std::string> InfeasibleReason(const std::vector<NodeClass>& up_classes,
                                            const ResourceRequest& r);
std::optional<std::string> InfeasibleReason(const std::vector<NodeState>& nodes,
                                            const ResourceRequest& r);

// "4 ranks (8 slots, 4 GPUs, 2.0 GiB)": what a request needs in all, for reasons.
std::string DescribeNeed(const ResourceRequest& r);
std::string DescribeAmount(const Amount& a, bool with_gpus, bool with_memory);

}  // namespace kiln::core
