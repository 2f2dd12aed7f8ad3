#include "worker/train/datasets.h"

#include <ATen/CPUGeneratorImpl.h>

#include "worker/train/csv_table.h"
#include "worker/train/idx_reader.h"

namespace kiln::train {

namespace {

// Fashion-MNIST training-set pixel statistics after scaling to [0, 1].
constexpr double kFashionMean = 0.2860;
constexpr double kFashionStd = 0.3530;

Result<std::pair<torch::Tensor, torch::Tensor>> LoadIdxPair(const std::string& dir,
                                                            const std::string& prefix) {
  auto images = ReadIdxFile(dir + "/" + prefix + "-images-idx3-ubyte.gz");
  if (!images.ok()) return images.status();
  auto labels = ReadIdxFile(dir + "/" + prefix + "-labels-idx1-ubyte.gz");
  if (!labels.ok()) return labels.status();
  if (images->Count() != labels->Count()) {
    return Status::InvalidArgument(prefix + ": " + std::to_string(images->Count()) +
                                   " images but " + std::to_string(labels->Count()) + " labels");
  }
  return std::make_pair(IdxImagesToFeatures(*images), IdxLabelsToTensor(*labels));
}

}  // namespace

torch::Tensor IdxImagesToFeatures(const IdxArray& images) {
  return torch::from_blob(const_cast<uint8_t*>(images.data.data()),
                          {images.Count(), images.ItemSize()}, torch::kUInt8)
      .to(torch::kFloat32)
      .div_(255.0)
      .sub_(kFashionMean)
      .div_(kFashionStd);
}

torch::Tensor IdxLabelsToTensor(const IdxArray& labels) {
  return torch::from_blob(const_cast<uint8_t*>(labels.data.data()), {labels.Count()},
                          torch::kUInt8)
      .to(torch::kInt64);
}

namespace {

Dataset Splits(torch::Tensor train_x, torch::Tensor train_y, torch::Tensor test_x,
               torch::Tensor test_y) {
  Dataset data;
  data.train_x = std::move(train_x);
  data.train_y = std::move(train_y);
  data.test_x = std::move(test_x);
  data.test_y = std::move(test_y);
  return data;
}

Dataset MakeSynthetic(const DataSpec& spec) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(spec.seed);
  const bool regression = spec.task == "regression";
  torch::Tensor teacher = torch::randn({spec.features, regression ? 1 : spec.classes}, gen);
  auto make = [&](int64_t n) {
    torch::Tensor x = torch::randn({n, spec.features}, gen);
    torch::Tensor scores = x.matmul(teacher);
    torch::Tensor y = regression ? (scores.reshape({-1}) + 0.1 * torch::randn({n}, gen))
                                 : scores.argmax(1);
    return std::make_pair(x, y);
  };
  auto [train_x, train_y] = make(spec.samples);
  auto [test_x, test_y] = make(spec.test_samples);
  return Splits(train_x, train_y, test_x, test_y);
}

// `columns`: the feature columns by name (empty: every column but the label, in file order).
Result<std::pair<torch::Tensor, torch::Tensor>> LoadCsv(const JobSpec& job, const std::string& path,
                                                       const std::vector<std::string>& columns,
                                                       std::vector<std::string>* names) {
  const DataSpec& spec = job.data;
  auto table = ReadCsvTable(path, spec.label_column, columns);
  if (!table.ok()) return table.status();
  if (names != nullptr) *names = table->feature_names;
  const int64_t features = static_cast<int64_t>(table->feature_names.size());
  if (spec.features > 0 && features != spec.features) {
    return Status::InvalidArgument(path + ": " + std::to_string(features) +
                                   " feature columns, data.features says " +
                                   std::to_string(spec.features));
  }
  torch::Tensor x = torch::from_blob(table->features.data(), {table->rows, features}, torch::kFloat32)
                        .clone();
  torch::Tensor labels = torch::tensor(table->labels, torch::kFloat64);
  if (job.IsRegression()) return std::make_pair(x, labels.to(torch::kFloat32));
  torch::Tensor as_int = labels.to(torch::kInt64);
  if (!torch::equal(as_int.to(torch::kFloat64), labels) || as_int.min().item<int64_t>() < 0 ||
      as_int.max().item<int64_t>() >= spec.classes) {
    return Status::InvalidArgument(path + ": column \"" + spec.label_column +
                                   "\" must hold class numbers 0.." +
                                   std::to_string(spec.classes - 1) + " for " + job.train.loss);
  }
  return std::make_pair(x, as_int);
}

// Holds out `fraction` of the training rows, chosen by `seed`, as the evaluation set.
void SplitValidation(Dataset* data, double fraction, uint64_t seed) {
  const int64_t n = data->train_x.size(0);
  const int64_t held = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(n) * fraction));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eedULL);
  torch::Tensor order = torch::randperm(n, gen);
  torch::Tensor val = order.narrow(0, 0, held), train = order.narrow(0, held, n - held);
  data->test_x = data->train_x.index_select(0, val);
  data->test_y = data->train_y.index_select(0, val);
  data->train_x = data->train_x.index_select(0, train);
  data->train_y = data->train_y.index_select(0, train);
  data->eval_name = "val";
}

Result<Dataset> LoadCsvDataset(const JobSpec& job) {
  std::vector<std::string> names;
  auto train = LoadCsv(job, job.data.path, job.data.feature_columns, &names);
  if (!train.ok()) return train.status();
  Dataset data = Splits(train->first, train->second, torch::Tensor(), torch::Tensor());
  data.feature_names = names;
  if (!job.data.test_path.empty()) {
    // The test file's columns are matched to the training file's by name, in whatever order.
    auto test = LoadCsv(job, job.data.test_path, names, nullptr);
    if (!test.ok()) return test.status();
    data.test_x = test->first;
    data.test_y = test->second;
  }
  return data;
}

}  // namespace

Result<Dataset> LoadDataset(const JobSpec& job) {
  const DataSpec& spec = job.data;
  try {
    Dataset data;
    if (spec.type == "synthetic") {
      data = MakeSynthetic(spec);
    } else if (spec.type == "fashion-mnist") {
      auto train = LoadIdxPair(spec.path, "train");
      if (!train.ok()) return train.status();
      auto test = LoadIdxPair(spec.path, "t10k");
      if (!test.ok()) return test.status();
      data = Splits(train->first, train->second, test->first, test->second);
    } else if (spec.type == "csv") {
      auto csv = LoadCsvDataset(job);
      if (!csv.ok()) return csv.status();
      data = std::move(csv).value();
    } else {
      return Status::InvalidArgument("data.type: unknown \"" + spec.type + "\"");
    }
    if (spec.validation_split > 0) SplitValidation(&data, spec.validation_split, spec.seed);
    if (spec.standardize) {
      // Statistics of the training split only, so evaluation data never leaks into them.
      data.feature_mean = data.train_x.mean(0);
      data.feature_std = data.train_x.std(0).clamp_min(1e-8);
      data.train_x = (data.train_x - data.feature_mean) / data.feature_std;
      if (data.test_x.defined()) data.test_x = (data.test_x - data.feature_mean) / data.feature_std;
    }
    return data;
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("loading data: ") + e.what_without_backtrace());
  }
}

}  // namespace kiln::train
