#include "scheduler/core/service_rollout.h"

#include <algorithm>

namespace kiln::core {

namespace {

// Replicas to stop first: those not ready, then the oldest (lowest job id).
std::vector<ReplicaStatus> StopOrder(std::vector<ReplicaStatus> replicas, bool newest_first) {
  std::sort(replicas.begin(), replicas.end(), [&](const ReplicaStatus& a, const ReplicaStatus& b) {
    if (a.ready != b.ready) return !a.ready;
    return newest_first ? a.job_id > b.job_id : a.job_id < b.job_id;
  });
  return replicas;
}

}  // namespace

RolloutPlan PlanRollout(int64_t replicas, const ModelRef& model,
                        const std::vector<ReplicaStatus>& live) {
  RolloutPlan plan;
  const int64_t want = std::max<int64_t>(0, replicas);
  std::vector<ReplicaStatus> current, old;
  for (const auto& r : live) (r.model == model ? current : old).push_back(r);
  const int64_t total = static_cast<int64_t>(live.size());
  plan.rolling = !old.empty();
  if (total < want) {
    plan.start = want - total;
    return plan;
  }
  if (old.empty()) {
    // Scale down: the extra replicas, not-ready and newest first (the oldest have served longest).
    const auto order = StopOrder(current, /*newest_first=*/true);
    for (int64_t i = 0; i < total - want; ++i)
      plan.stop.push_back(order[static_cast<size_t>(i)].job_id);
    return plan;
  }
  if (want == 0) {
    for (const auto& r : live) plan.stop.push_back(r.job_id);
    return plan;
  }
  const bool current_ready =
      std::all_of(current.begin(), current.end(), [](const ReplicaStatus& r) { return r.ready; });
  if (!current_ready) {
    // A new replica is on its way: an old one that is not ready serves nobody, so it goes now
    // when the new ones already make up the surge.
    if (total > want) {
      for (const auto& r : StopOrder(old, false)) {
        if (r.ready || static_cast<int64_t>(plan.stop.size()) >= total - want) break;
        plan.stop.push_back(r.job_id);
      }
    }
    const bool surge_waits = std::any_of(current.begin(), current.end(),
                                         [](const ReplicaStatus& r) { return r.waiting_for_room; });
    const int64_t ready =
        std::count_if(live.begin(), live.end(), [](const ReplicaStatus& r) { return r.ready; });
    if (plan.stop.empty() && total > want && surge_waits && ready >= want) {
      for (const auto& r : StopOrder(old, false)) {
        if (r.on_drained_node) continue;  // its slots take no new work anyway
        plan.stop.push_back(r.job_id);
        break;
      }
    }
    return plan;
  }
  if (total <= want) {
    plan.start = 1;  // the surge
    return plan;
  }
  const auto order = StopOrder(old, false);
  for (int64_t i = 0; i < total - want && i < static_cast<int64_t>(order.size()); ++i) {
    plan.stop.push_back(order[static_cast<size_t>(i)].job_id);
  }
  return plan;
}

}  // namespace kiln::core
