#include "worker/train/predictor.h"

#include <algorithm>
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

std::vector<std::string> SplitCells(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> cells;
  std::istringstream in(line);
  std::string cell;
  while (std::getline(in, cell, ',')) {
    const size_t first = cell.find_first_not_of(" \t\"");
    const size_t last = cell.find_last_not_of(" \t\"");
    cells.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
  }
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Which input column feeds each model input, and which holds the label (-1: none), from the
// input's header and what the model was trained on.
Result<std::pair<std::vector<int>, int>> ColumnsByName(const std::vector<std::string>& header,
                                                       const std::string& path,
                                                       const PredictionColumns& trained,
                                                       int features) {
  auto column = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int label = trained.label_column.empty() ? -1 : column(trained.label_column);
  std::vector<int> chosen;
  if (!trained.feature_columns.empty()) {
    for (const auto& name : trained.feature_columns) {
      const int c = column(name);
      if (c < 0) {
        return Status::InvalidArgument(
            path + ": no column \"" + name + "\" in the header; the model was trained on " +
            JoinNames(trained.feature_columns) + " (in any order)");
      }
      chosen.push_back(c);
    }
  } else {
    // A checkpoint that does not name its columns: every column but the label, in file order.
    for (int c = 0; c < static_cast<int>(header.size()); ++c) {
      if (c != label) chosen.push_back(c);
    }
  }
  if (static_cast<int>(chosen.size()) != features) {
    return Status::InvalidArgument(path + ": " + std::to_string(chosen.size()) +
                                   " feature columns, the model takes " +
                                   std::to_string(features));
  }
  return std::make_pair(chosen, label);
}

Result<PredictionInput> ParseCsv(const std::string& text, const std::string& path, int features,
                                 const PredictionColumns& trained) {
  PredictionInput input;
  std::vector<float> values;
  std::vector<int64_t> labels;
  std::istringstream lines(text);
  std::string line;
  int64_t rows = 0, line_number = 0;
  std::vector<int> chosen;
  int label = -1;
  size_t width = 0;
  bool header_seen = false;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::vector<std::string> cells = SplitCells(line);
    if (!header_seen && rows == 0) {
      header_seen = true;
      std::vector<double> probe(cells.size());
      bool numeric = true;
      for (size_t i = 0; i < cells.size(); ++i) numeric = numeric && ParseNumber(cells[i], &probe[i]);
      if (!numeric) {  // a header: columns are matched by name
        auto columns = ColumnsByName(cells, path, trained, features);
        if (!columns.ok()) return columns.status();
        chosen = columns->first;
        label = columns->second;
        width = cells.size();
        input.header = true;
        continue;
      }
      // No header: the columns are the model's inputs, in the training order.
      if (static_cast<int>(cells.size()) != features) {
        return Status::InvalidArgument(
            path + " line " + std::to_string(line_number) + ": expected " +
            std::to_string(features) + " features (the model's input), got " +
            std::to_string(cells.size()) +
            (trained.feature_columns.empty()
                 ? ""
                 : "; add a header line naming the columns (" + JoinNames(trained.feature_columns) +
                       ") to pick them by name"));
      }
      for (int c = 0; c < features; ++c) chosen.push_back(c);
      width = cells.size();
    }
    if (cells.size() != width) {
      return Status::InvalidArgument(path + " line " + std::to_string(line_number) + ": " +
                                     std::to_string(cells.size()) + " values, expected " +
                                     std::to_string(width));
    }
    for (int c : chosen) {
      double v = 0;
      if (!ParseNumber(cells[static_cast<size_t>(c)], &v)) {
        return Status::InvalidArgument(path + " line " + std::to_string(line_number) +
                                       ": every value must be a number");
      }
      values.push_back(static_cast<float>(v));
    }
    if (label >= 0) {
      double v = 0;
      if (!ParseNumber(cells[static_cast<size_t>(label)], &v)) {
        return Status::InvalidArgument(path + " line " + std::to_string(line_number) +
                                       ", column \"" + trained.label_column +
                                       "\": not a number");
      }
      labels.push_back(static_cast<int64_t>(v));
    }
    ++rows;
  }
  if (rows == 0) return Status::InvalidArgument(path + ": no rows to predict");
  input.rows = torch::from_blob(values.data(), {rows, features}, torch::kFloat32).clone();
  if (label >= 0) input.labels = torch::tensor(labels, torch::kInt64);
  return input;
}

}  // namespace

PredictionColumns TrainedColumns(const JobSpec& spec, const nlohmann::json& checkpoint_input) {
  PredictionColumns columns;
  columns.label_column = checkpoint_input.value("label_column", spec.data.label_column);
  if (checkpoint_input.contains("feature_columns") && checkpoint_input["feature_columns"].is_array()) {
    for (const auto& n : checkpoint_input["feature_columns"]) {
      if (n.is_string()) columns.feature_columns.push_back(n.get<std::string>());
    }
  }
  if (columns.feature_columns.empty()) columns.feature_columns = spec.data.feature_columns;
  return columns;
}

Result<PredictionInput> ReadPredictionInput(const std::string& path, const JobSpec& spec,
                                            const PredictionColumns& trained) {
  auto bytes = ReadMaybeGzipFile(path);
  if (!bytes.ok()) return bytes.status();
  if (!LooksLikeIdx(*bytes)) {
    auto input = ParseCsv(*bytes, path, spec.InputFeatures(), trained);
    if (!input.ok() || !spec.data.standardize) return input;
    // The model saw features scaled by its training split's statistics: recompute them the same
    // way (same files, same seed) and scale these rows alike.
    auto training = LoadDataset(spec);
    if (!training.ok()) {
      return Status::FailedPrecondition("the job standardized its features; its training data is "
                                        "needed to do the same here: " +
                                        training.status().message());
    }
    input->rows = (input->rows - training->feature_mean) / training->feature_std;
    return input;
  }
  auto images = ParseIdx(*bytes, path);
  if (!images.ok()) return images.status();
  if (images->ItemSize() != spec.InputFeatures()) {
    return Status::InvalidArgument(path + ": images of " + std::to_string(images->ItemSize()) +
                                   " pixels, the model takes " +
                                   std::to_string(spec.InputFeatures()) + " features");
  }
  PredictionInput input;
  input.rows = IdxImagesToFeatures(*images);
  return input;
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

void Predictor::To(torch::Device device) {
  model_->to(device);
  device_ = device;
}

std::vector<Prediction> Predictor::Predict(const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  std::vector<Prediction> out;
  out.reserve(static_cast<size_t>(rows.size(0)));
  constexpr int64_t kBatch = 4096;
  for (int64_t i = 0; i < rows.size(0); i += kBatch) {
    torch::Tensor output =
        model_->forward(rows.narrow(0, i, std::min(kBatch, rows.size(0) - i)).to(device_))
            .to(torch::kCPU);
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
