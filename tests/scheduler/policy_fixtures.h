// Hand-built clusters and queues for the scheduling policy's tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "scheduler/core/scheduling_policy.h"

namespace kiln::core::testing {

inline NodeState Node(const std::string& name, int64_t slots, int gpus = 0,
                      std::vector<std::string> labels = {}, int64_t memory = 64ll << 30) {
  NodeState n;
  n.name = name;
  n.slots = slots;
  n.gpus = gpus;
  n.labels = std::move(labels);
  n.memory_bytes = memory;
  return n;
}

inline ResourceRequest Ranks(int64_t ranks, int64_t gpus_per_rank = 0) {
  ResourceRequest r;
  r.ranks = ranks;
  r.gpus_per_rank = gpus_per_rank;
  return r;
}

// Owns everything a SchedulingInput points at.
struct Scenario {
  std::vector<NodeState> nodes;
  std::vector<RunningJob> running;
  std::vector<std::unique_ptr<QueuedJob>> jobs;
  std::vector<UserShare> users{{"alice", 0, 1}, {"bob", 0, 1}, {"carol", 0, 1}};
  std::unordered_map<int64_t, JobState> dependencies;
  Millis now = 1'000'000;
  double commitment_s = 3600;
  bool backfill = true;

  QueuedJob& Queue(int64_t id, ResourceRequest r, int32_t user = 0, int64_t priority = 0,
                   Millis time_limit_ms = 0) {
    auto j = std::make_unique<QueuedJob>();
    j->id = id;
    j->request = std::move(r);
    j->user = user;
    j->priority = priority;
    j->time_limit_ms = time_limit_ms;
    jobs.push_back(std::move(j));
    return *jobs.back();
  }
  // A running job holding `ranks` slots (and GPUs) of node `node` until end_by (0: no limit).
  void Run(int64_t id, int32_t node, int64_t ranks, Millis end_by, int64_t gpus_per_rank = 0,
           int32_t user = 0) {
    RunningJob r;
    r.id = id;
    r.user = user;
    r.request = Ranks(ranks, gpus_per_rank);
    NodeShare share{node, ranks, {}};
    share.gpu_ids = LowestFreeGpus(nodes[node].used_gpu_mask, nodes[node].gpus,
                                   ranks * gpus_per_rank);
    nodes[node].used_slots += ranks;
    nodes[node].used_gpu_mask |= GpuMask(share.gpu_ids);
    r.shares = {share};
    r.end_by = end_by;
    running.push_back(r);
  }
  SchedulingPlan Plan() const {
    SchedulingInput in;
    in.nodes = &nodes;
    in.running = &running;
    for (const auto& j : jobs) in.queue.push_back(j.get());
    in.users = &users;
    in.dependencies = &dependencies;
    in.now = now;
    in.commitment_s = commitment_s;
    in.backfill = backfill;
    return PlanPass(in);
  }
};

inline const JobStart* StartOf(const SchedulingPlan& plan, int64_t id) {
  for (const auto& s : plan.starts) {
    if (s.job_id == id) return &s;
  }
  return nullptr;
}
inline const JobWait* WaitOf(const SchedulingPlan& plan, int64_t id) {
  for (const auto& w : plan.waits) {
    if (w.job_id == id) return &w;
  }
  return nullptr;
}
inline std::vector<int64_t> StartedIds(const SchedulingPlan& plan) {
  std::vector<int64_t> ids;
  for (const auto& s : plan.starts) ids.push_back(s.job_id);
  return ids;
}

}  // namespace kiln::core::testing
