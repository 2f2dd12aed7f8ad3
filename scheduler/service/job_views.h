// JSON views of scheduler records, as the CLI prints them with --json. Pure.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/service/store.h"

namespace kiln::service {

// {id, name, state, reason, attempt, ranks, node, submitted_at, started_at, finished_at,
//  exit_code, max_retries, metrics}; metrics is rank 0's latest report.
nlohmann::json JobSummaryView(const JobRecord& job);
// The summary plus "events", "checkpoints", "checkpoint_bytes" and, for a job submitted to
// continue another, "resumed_from".
nlohmann::json JobDetailView(const JobRecord& job, const std::vector<JobEventRecord>& events,
                             const std::vector<CheckpointRecord>& checkpoints);
// {step, epoch, attempt, metrics, bytes, sha256, created_at, storage, path}
nlohmann::json CheckpointView(const CheckpointRecord& checkpoint);
// {name, state, slots, used_slots, gpus, memory_bytes, last_seen_at}
nlohmann::json NodeView(const NodeRecord& node, int64_t used_slots);

}  // namespace kiln::service
