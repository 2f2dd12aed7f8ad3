// Builds the network a job spec describes.
#pragma once

#include <torch/torch.h>

#include "common/job_spec.h"

namespace kiln::train {

// mlp: Linear(in, hidden[0]) -> activation -> ... -> Linear(., out) [-> Sigmoid].
torch::nn::Sequential BuildModel(const JobSpec& spec);

// The loss of the spec on model outputs and integer labels (mean over the batch).
torch::Tensor ComputeLoss(const JobSpec& spec, const torch::Tensor& output,
                          const torch::Tensor& labels);
// How many predictions match the labels (0 for regression, which has no accuracy).
int64_t CountCorrect(const JobSpec& spec, const torch::Tensor& output, const torch::Tensor& labels);

}  // namespace kiln::train
