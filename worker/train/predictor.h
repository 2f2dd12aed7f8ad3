// Prediction with a trained checkpoint: reads input rows (CSV or IDX images), runs the model the
// job spec describes with the checkpoint's weights, and returns one prediction per row.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/job_spec.h"
#include "common/status.h"

namespace kiln::train {

// The columns a model was trained on: from the checkpoint (which names them) or the job's spec.
struct PredictionColumns {
  std::vector<std::string> feature_columns;  // in the model's input order; empty: not known
  std::string label_column;
};
PredictionColumns TrainedColumns(const JobSpec& spec, const nlohmann::json& checkpoint_input);

struct PredictionInput {
  torch::Tensor rows;    // float32 [N, spec.InputFeatures()]
  torch::Tensor labels;  // int64 [N] when a CSV header has the label column; else undefined
  bool header = false;   // CSV: columns were matched by name
};

// Input rows as the model sees them. IDX images (gzip or not) get the same scaling as training.
// CSV: with a header line, the model's columns are picked by name in any order (and the label
// column, when present, is returned for accuracy); without one, each row must hold exactly the
// model's inputs in the training order. Errors name the file, line and column.
Result<PredictionInput> ReadPredictionInput(const std::string& path, const JobSpec& spec,
                                            const PredictionColumns& trained);
// True labels: IDX labels, or one integer per line.
Result<torch::Tensor> ReadLabels(const std::string& path);

struct Prediction {
  int64_t label = 0;
  double probability = 0;  // of the predicted label
};

class Predictor {
 public:
  static Result<Predictor> Load(const JobSpec& spec, const std::string& checkpoint_path);
  // Moves the model to `device` (loaded on the CPU); rows are copied there, answers back.
  void To(torch::Device device);
  std::vector<Prediction> Predict(const torch::Tensor& rows);

 private:
  Predictor(const JobSpec& spec, torch::nn::Sequential model) : spec_(spec), model_(model) {}
  JobSpec spec_;
  torch::nn::Sequential model_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace kiln::train
