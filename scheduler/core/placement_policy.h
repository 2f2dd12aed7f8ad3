// Decides which pending jobs start now and where. Pure: reads only its arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::core {

struct NodeView {
  std::string name;
  int64_t slots = 0;
  int64_t used_slots = 0;
  int64_t gpus = 0;
  int64_t used_gpus = 0;
  bool up = true;
  int64_t FreeSlots() const { return slots - used_slots; }
  int64_t FreeGpus() const { return gpus - used_gpus; }
};

struct PendingJobView {
  int64_t job_id = 0;
  int64_t ranks = 1;
  int64_t gpus_per_rank = 0;
};

struct Placement {
  int64_t job_id = 0;
  std::string node;
  int64_t ranks = 0;
  int64_t gpus = 0;
};

struct WaitingJob {
  int64_t job_id = 0;
  std::string reason;  // shown by `kiln show` / `kiln queue`
};

struct PlacementPlan {
  std::vector<Placement> placements;
  std::vector<WaitingJob> waiting;
};

class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  // `queue` is in priority order (oldest first today). Every job of the queue appears exactly once
  // in the plan: placed, or waiting with a reason.
  virtual PlacementPlan Plan(const std::vector<NodeView>& nodes,
                             const std::vector<PendingJobView>& queue) const = 0;
};

// All ranks of a job on one node; the first job in queue order that fits goes first, on the
// up node with the fewest free slots that still fit it (best fit keeps big holes for big jobs).
class SingleNodeBestFit final : public PlacementPolicy {
 public:
  PlacementPlan Plan(const std::vector<NodeView>& nodes,
                     const std::vector<PendingJobView>& queue) const override;
};

}  // namespace kiln::core
