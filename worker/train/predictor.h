// Prediction with a trained checkpoint: reads input rows (CSV or IDX images), runs the model the
// job spec describes with the checkpoint's weights, and returns one prediction per row.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/job_spec.h"
#include "common/status.h"

namespace kiln::train {

// Input rows as the model sees them. IDX images (gzip or not) get the same scaling as training;
// CSV rows (an optional header line, then numbers separated by commas) are used as they are.
// Every row must have spec.InputFeatures() values; errors name the row.
Result<torch::Tensor> ReadPredictionInput(const std::string& path, const JobSpec& spec);
// True labels: IDX labels, or one integer per line.
Result<torch::Tensor> ReadLabels(const std::string& path);

struct Prediction {
  int64_t label = 0;
  double probability = 0;  // of the predicted label
};

class Predictor {
 public:
  static Result<Predictor> Load(const JobSpec& spec, const std::string& checkpoint_path);
  std::vector<Prediction> Predict(const torch::Tensor& rows);

 private:
  Predictor(const JobSpec& spec, torch::nn::Sequential model) : spec_(spec), model_(model) {}
  JobSpec spec_;
  torch::nn::Sequential model_;
};

}  // namespace kiln::train
