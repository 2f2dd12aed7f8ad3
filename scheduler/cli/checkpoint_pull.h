// Downloads a job's checkpoint from the scheduler in chunks and verifies it: what `kiln ckpt pull`
// and `kiln predict` use. Memory is bounded by one chunk.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "scheduler/cli/scheduler_client.h"

namespace kiln::cli {

struct PulledCheckpoint {
  std::string path;
  int64_t step = 0;
  int64_t bytes = 0;
  std::string sha256;
};

// Writes checkpoint `step` (-1: latest) of job_id to <dir>/job-<id>-step-<step>.pt, atomically,
// and checks its sha256. A file already there with the right hash is not downloaded again.
Result<PulledCheckpoint> PullCheckpoint(SchedulerClient& client, int64_t job_id, int64_t step,
                                        const std::string& dir);

// The step of the job's best checkpoint by the spec's checkpoint.keep_best metric (default
// test_accuracy, higher is better), from a `kiln show --json` view.
Result<int64_t> BestCheckpointStep(const nlohmann::json& job_view);

}  // namespace kiln::cli
