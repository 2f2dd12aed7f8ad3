// JSON views of scheduler records, as the CLI prints them with --json. Pure.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/service/store.h"

namespace kiln::service {

// {id, name, user, state, reason, priority, held, time_limit_s, depends_on, attempt, ranks,
//  gpus_per_rank, node, allocation, submitted_at, started_at, finished_at, exit_code,
//  max_retries, metrics}; metrics is rank 0's latest report.
nlohmann::json JobSummaryView(const JobRecord& job);
// The summary plus "events", "attempts" ({attempt, nodes, started_at, ended_at, outcome,
// exit_code, reason, resumed_from_step}), "checkpoints", "checkpoint_bytes" and, for a job
// submitted to continue another, "resumed_from".
nlohmann::json JobDetailView(const JobRecord& job, const std::vector<JobEventRecord>& events,
                             const std::vector<AttemptRecord>& attempts,
                             const std::vector<CheckpointRecord>& checkpoints);
// {step, epoch, attempt, metrics, bytes, sha256, created_at, storage, path}
nlohmann::json CheckpointView(const CheckpointRecord& checkpoint);
struct NodeUse {  // what running attempts hold on a node
  int64_t slots = 0;
  int64_t gpus = 0;
  int64_t memory = 0;
  int64_t attempts = 0;
  uint64_t gpu_mask = 0;  // GPU ids held (bit i: GPU i)
};
// {name, state (UP | DRAINING | DRAINED | DOWN), drain_reason, labels, slots, used_slots, gpus,
//  used_gpus, memory_bytes, used_memory_bytes, registered_at, last_seen_at}
nlohmann::json NodeView(const NodeRecord& node, const NodeUse& use);

}  // namespace kiln::service
