#include "worker/train/datasets.h"

#include <ATen/CPUGeneratorImpl.h>

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

Dataset MakeSynthetic(const DataSpec& spec) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(spec.seed);
  auto make = [&](int64_t n, const torch::Tensor& teacher) {
    torch::Tensor x = torch::randn({n, spec.features}, gen);
    torch::Tensor y = x.matmul(teacher).argmax(1);
    return std::make_pair(x, y);
  };
  torch::Tensor teacher = torch::randn({spec.features, spec.classes}, gen);
  auto [train_x, train_y] = make(spec.samples, teacher);
  auto [test_x, test_y] = make(spec.test_samples, teacher);
  return {train_x, train_y, test_x, test_y};
}

}  // namespace

Result<Dataset> LoadDataset(const DataSpec& spec) {
  try {
    if (spec.type == "synthetic") return MakeSynthetic(spec);
    if (spec.type == "fashion-mnist") {
      auto train = LoadIdxPair(spec.path, "train");
      if (!train.ok()) return train.status();
      auto test = LoadIdxPair(spec.path, "t10k");
      if (!test.ok()) return test.status();
      return Dataset{train->first, train->second, test->first, test->second};
    }
    return Status::InvalidArgument("data.type: unknown \"" + spec.type + "\"");
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("loading data: ") + e.what_without_backtrace());
  }
}

}  // namespace kiln::train
