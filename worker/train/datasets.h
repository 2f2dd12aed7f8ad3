// Training and test data as tensors, loaded whole on every rank (each rank then reads its shard).
#pragma once

#include <torch/torch.h>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/train/idx_reader.h"

namespace kiln::train {

struct Dataset {
  torch::Tensor train_x;  // float32 [N, features]
  torch::Tensor train_y;  // int64 [N] class labels
  torch::Tensor test_x;
  torch::Tensor test_y;
};

// IDX images as the model's input rows: [N, H*W] float32 scaled to [0, 1] and standardized with
// the Fashion-MNIST training set's mean and deviation, exactly as training sees them.
torch::Tensor IdxImagesToFeatures(const IdxArray& images);
// IDX labels as int64 [N].
torch::Tensor IdxLabelsToTensor(const IdxArray& labels);

// fashion-mnist: the four IDX .gz files under data.path, pixels scaled to [0,1] and standardized
// with the training set's mean and deviation. synthetic: Gaussian features labelled by a random
// linear teacher, all from data.seed, so every rank builds the same set.
Result<Dataset> LoadDataset(const DataSpec& spec);

}  // namespace kiln::train
