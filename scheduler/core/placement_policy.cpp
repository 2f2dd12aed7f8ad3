#include "scheduler/core/placement_policy.h"

namespace kiln::core {

namespace {

std::string WaitReason(const PendingJobView& job, const std::vector<NodeView>& nodes) {
  int64_t largest_slots = 0, largest_gpus = 0, most_free_slots = 0, most_free_gpus = 0;
  int up_nodes = 0;
  for (const auto& n : nodes) {
    if (!n.up) continue;
    ++up_nodes;
    largest_slots = std::max(largest_slots, n.slots);
    largest_gpus = std::max(largest_gpus, n.gpus);
    most_free_slots = std::max(most_free_slots, n.FreeSlots());
    most_free_gpus = std::max(most_free_gpus, n.FreeGpus());
  }
  const int64_t gpus = job.ranks * job.gpus_per_rank;
  if (up_nodes == 0) return "Waiting: no worker is up";
  if (job.ranks > largest_slots) {
    return "Infeasible: needs " + std::to_string(job.ranks) + " slots on one node, largest has " +
           std::to_string(largest_slots);
  }
  if (gpus > largest_gpus) {
    return "Infeasible: needs " + std::to_string(gpus) + " GPUs on one node, largest has " +
           std::to_string(largest_gpus);
  }
  std::string reason = "Resources: needs " + std::to_string(job.ranks) + " slots";
  if (gpus > 0) reason += " and " + std::to_string(gpus) + " GPUs";
  reason += " on one node, most free is " + std::to_string(most_free_slots) + " slots";
  if (gpus > 0) reason += " and " + std::to_string(most_free_gpus) + " GPUs";
  return reason;
}

}  // namespace

PlacementPlan SingleNodeBestFit::Plan(const std::vector<NodeView>& nodes_in,
                                      const std::vector<PendingJobView>& queue) const {
  std::vector<NodeView> nodes = nodes_in;  // consumed as jobs are placed in this pass
  PlacementPlan plan;
  for (const auto& job : queue) {
    const int64_t gpus = job.ranks * job.gpus_per_rank;
    NodeView* best = nullptr;
    for (auto& n : nodes) {
      if (!n.up || n.FreeSlots() < job.ranks || n.FreeGpus() < gpus) continue;
      if (best == nullptr || n.FreeSlots() < best->FreeSlots()) best = &n;
    }
    if (best == nullptr) {
      plan.waiting.push_back({job.job_id, WaitReason(job, nodes)});
      continue;
    }
    best->used_slots += job.ranks;
    best->used_gpus += gpus;
    plan.placements.push_back({job.job_id, best->name, job.ranks, gpus});
  }
  return plan;
}

}  // namespace kiln::core
