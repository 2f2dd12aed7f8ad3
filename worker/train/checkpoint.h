// Checkpoint files: model parameters, optimizer state, step, epoch and metrics, in one LibTorch
// archive, written atomically (temp file, fsync, rename).
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/status.h"

namespace kiln::train {

struct CheckpointState {
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;  // epoch the next step belongs to (0-based)
  int64_t world_size = 1;
  int64_t global_batch = 0;  // samples per step over all ranks (kept when the world size changes)
  nlohmann::json metrics = nlohmann::json::object();
  // What the model's input rows are: {"features": N, "feature_columns": [...], "label_column"}
  // for csv data; empty for other data and for checkpoints written before it was kept.
  nlohmann::json input = nlohmann::json::object();
};

struct SavedCheckpoint {
  std::string path;
  int64_t bytes = 0;
  std::string sha256;
};

Result<SavedCheckpoint> SaveCheckpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer& optimizer,
                                       const CheckpointState& state);
// The saved state without the model (input description, step, metrics).
Result<CheckpointState> ReadCheckpointState(const std::string& path);
// Restores only the model's parameters, on the CPU (for prediction); returns the saved state.
Result<CheckpointState> LoadModelWeights(const std::string& path, torch::nn::Module& model);
// Restores model and optimizer in place, their tensors on `device` (the model's), and returns the
// saved state.
Result<CheckpointState> LoadCheckpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer& optimizer,
                                       torch::Device device = torch::kCPU);

}  // namespace kiln::train
