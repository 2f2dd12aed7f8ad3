// Builds the network a job spec describes.
#pragma once

#include <torch/torch.h>

#include "common/job_spec.h"
#include "common/status.h"

namespace kiln::train {

// mlp: Linear(in, hidden[0]) -> activation -> ... -> Linear(., out) [-> Sigmoid].
// cnn: conv blocks, flatten, then the mlp layers. torchscript: the module at model.path (throws
// c10::Error if it cannot be loaded).
torch::nn::Sequential BuildModel(const JobSpec& spec);
// The same, with a load failure of a torchscript module as an error naming model.path.
Result<torch::nn::Sequential> TryBuildModel(const JobSpec& spec);

// The loss of the spec on model outputs and integer labels (mean over the batch).
torch::Tensor ComputeLoss(const JobSpec& spec, const torch::Tensor& output,
                          const torch::Tensor& labels);
// How many predictions match the labels (0 for regression, which has no accuracy).
int64_t CountCorrect(const JobSpec& spec, const torch::Tensor& output, const torch::Tensor& labels);

}  // namespace kiln::train
