#include "worker/train/predictor.h"

#include <sstream>

#include "worker/train/checkpoint.h"
#include "worker/train/datasets.h"
#include "worker/train/idx_reader.h"
#include "worker/train/model.h"

namespace kiln::train {

namespace {

bool LooksLikeIdx(const std::string& bytes) {
  return bytes.size() >= 4 && bytes[0] == 0 && bytes[1] == 0;
}

bool ParseNumber(const std::string& text, double* out) {
  std::istringstream in(text);
  in >> *out;
  return !in.fail() && (in >> std::ws).eof();
}

Result<torch::Tensor> ParseCsv(const std::string& text, const std::string& path, int features) {
  std::vector<float> values;
  std::istringstream lines(text);
  std::string line;
  int64_t rows = 0, line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<double> row;
    std::istringstream cells(line);
    std::string cell;
    bool numeric = true;
    while (std::getline(cells, cell, ',')) {
      double v = 0;
      numeric = numeric && ParseNumber(cell, &v);
      row.push_back(v);
    }
    if (!numeric) {
      if (rows == 0 && line_number == 1) continue;  // a header
      return Status::InvalidArgument(path + " line " + std::to_string(line_number) +
                                     ": every value must be a number");
    }
    if (static_cast<int>(row.size()) != features) {
      return Status::InvalidArgument(path + " line " + std::to_string(line_number) + ": expected " +
                                     std::to_string(features) + " features (the model's input), got " +
                                     std::to_string(row.size()));
    }
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  if (rows == 0) return Status::InvalidArgument(path + ": no rows to predict");
  return torch::from_blob(values.data(), {rows, features}, torch::kFloat32).clone();
}

}  // namespace

Result<torch::Tensor> ReadPredictionInput(const std::string& path, const JobSpec& spec) {
  auto bytes = ReadMaybeGzipFile(path);
  if (!bytes.ok()) return bytes.status();
  if (!LooksLikeIdx(*bytes)) {
    auto rows = ParseCsv(*bytes, path, spec.InputFeatures());
    if (!rows.ok() || !spec.data.standardize) return rows;
    // The model saw features scaled by its training split's statistics: recompute them the same
    // way (same files, same seed) and scale these rows alike.
    auto training = LoadDataset(spec);
    if (!training.ok()) {
      return Status::FailedPrecondition("the job standardized its features; its training data is "
                                        "needed to do the same here: " +
                                        training.status().message());
    }
    return (*rows - training->feature_mean) / training->feature_std;
  }
  auto images = ParseIdx(*bytes, path);
  if (!images.ok()) return images.status();
  if (images->ItemSize() != spec.InputFeatures()) {
    return Status::InvalidArgument(path + ": images of " + std::to_string(images->ItemSize()) +
                                   " pixels, the model takes " +
                                   std::to_string(spec.InputFeatures()) + " features");
  }
  return IdxImagesToFeatures(*images);
}

Result<torch::Tensor> ReadLabels(const std::string& path) {
  auto bytes = ReadMaybeGzipFile(path);
  if (!bytes.ok()) return bytes.status();
  if (LooksLikeIdx(*bytes)) {
    auto labels = ParseIdx(*bytes, path);
    if (!labels.ok()) return labels.status();
    return IdxLabelsToTensor(*labels);
  }
  std::vector<int64_t> values;
  std::istringstream lines(*bytes);
  std::string line;
  int64_t line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    double v = 0;
    if (!ParseNumber(line, &v)) {
      if (line_number == 1) continue;  // a header
      return Status::InvalidArgument(path + " line " + std::to_string(line_number) +
                                     ": expected an integer label");
    }
    values.push_back(static_cast<int64_t>(v));
  }
  return torch::tensor(values, torch::kInt64);
}

Result<Predictor> Predictor::Load(const JobSpec& spec, const std::string& checkpoint_path) {
  auto built = TryBuildModel(spec);
  if (!built.ok()) return built.status();
  torch::nn::Sequential model = *built;
  auto state = LoadModelWeights(checkpoint_path, *model);
  if (!state.ok()) return state.status();
  model->eval();
  return Predictor(spec, model);
}

std::vector<Prediction> Predictor::Predict(const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  std::vector<Prediction> out;
  out.reserve(static_cast<size_t>(rows.size(0)));
  constexpr int64_t kBatch = 4096;
  for (int64_t i = 0; i < rows.size(0); i += kBatch) {
    torch::Tensor output = model_->forward(rows.narrow(0, i, std::min(kBatch, rows.size(0) - i)));
    if (spec_.train.loss == "binary_cross_entropy") {
      torch::Tensor p = output.reshape({-1});
      if (spec_.model.output_activation != "sigmoid") p = torch::sigmoid(p);
      auto acc = p.accessor<float, 1>();
      for (int64_t r = 0; r < p.size(0); ++r) {
        const bool positive = acc[r] > 0.5f;
        out.push_back({positive ? 1 : 0, positive ? acc[r] : 1.0 - acc[r]});
      }
    } else {
      auto [prob, label] = torch::softmax(output, 1).max(1);
      auto p = prob.accessor<float, 1>();
      auto l = label.accessor<int64_t, 1>();
      for (int64_t r = 0; r < prob.size(0); ++r) out.push_back({l[r], p[r]});
    }
  }
  return out;
}

}  // namespace kiln::train
