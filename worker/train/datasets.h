// Training and test data as tensors, loaded whole on every rank (each rank then reads its shard).
#pragma once

#include <torch/torch.h>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/train/idx_reader.h"

namespace kiln::train {

struct Dataset {
  torch::Tensor train_x;  // float32 [N, features]
  torch::Tensor train_y;  // int64 [N] class labels; float32 [N] for regression (mse)
  torch::Tensor test_x;   // the evaluation set: the test set, or the validation split
  torch::Tensor test_y;
  std::string eval_name = "test";  // "test" or "val": prefixes the evaluation metrics
  // csv with standardize: the training split's per-feature mean and deviation, applied to every
  // split (and needed again to predict). Undefined otherwise.
  torch::Tensor feature_mean;
  torch::Tensor feature_std;
  // csv: the training file's feature columns, in the model's input order (checkpoints keep them,
  // so that prediction picks input columns by name).
  std::vector<std::string> feature_names;
};

// IDX images as the model's input rows: [N, H*W] float32 scaled to [0, 1] and standardized with
// the Fashion-MNIST training set's mean and deviation, exactly as training sees them.
torch::Tensor IdxImagesToFeatures(const IdxArray& images);
// IDX labels as int64 [N].
torch::Tensor IdxLabelsToTensor(const IdxArray& labels);

// fashion-mnist: the four IDX .gz files under data.path, pixels scaled to [0,1] and standardized
// with the training set's mean and deviation. synthetic: Gaussian features labelled by a random
// linear teacher (classes: argmax; regression: the value plus noise), all from data.seed, so every
// rank builds the same set. csv: data.path (and data.test_path), see csv_table.h.
// With data.validation_split, that fraction of the training rows (chosen by data.seed) is held out
// and becomes the evaluation set.
Result<Dataset> LoadDataset(const JobSpec& spec);

}  // namespace kiln::train
