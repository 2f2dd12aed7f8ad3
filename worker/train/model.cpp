#include "worker/train/model.h"

#include <torch/script.h>

#include <algorithm>
#include <fstream>

#include "common/file_util.h"
#include "worker/train/max_pool.h"

namespace kiln::train {

namespace F = torch::nn::functional;

namespace {

void AddActivation(torch::nn::Sequential& seq, const std::string& name) {
  if (name == "relu") seq->push_back(torch::nn::ReLU());
  else if (name == "tanh") seq->push_back(torch::nn::Tanh());
  else if (name == "sigmoid") seq->push_back(torch::nn::Sigmoid());
  else if (name == "gelu") seq->push_back(torch::nn::GELU());
}

// Whether the activation may run after the max pool with bit-identical values and gradients:
// max(relu(a), relu(b)) = relu(max(a, b)) exactly, and the gradient reaches the same element or
// is zero either way. tanh and sigmoid are increasing too, but their vectorized and scalar paths
// can round apart by an ulp, and gelu dips below zero, so those keep the usual order.
bool CommutesWithMaxPool(const std::string& activation) { return activation == "relu"; }

}  // namespace

namespace {

// A TorchScript module as a torch::nn::Module: its parameters are registered as this module's
// own (the same tensors), so the optimizer, the gradient sync engine and checkpoints see them.
class ScriptedModelImpl : public torch::nn::Module {
 public:
  explicit ScriptedModelImpl(const std::string& path) : module_(torch::jit::load(path)) {
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      std::string name = p.name;
      std::replace(name.begin(), name.end(), '.', '_');
      register_parameter(name, p.value);
    }
  }
  torch::Tensor forward(torch::Tensor x) { return module_.forward({x}).toTensor(); }
  // Moves the script module's buffers too (BatchNorm statistics, constants): only its
  // parameters are registered here. The script module moves tensors with set_data, so the
  // registered parameters stay the same tensors.
  using torch::nn::Module::to;
  void to(torch::Device device, bool non_blocking = false) override {
    torch::nn::Module::to(device, non_blocking);
    module_.to(device, non_blocking);
  }
  void train(bool on = true) override {
    torch::nn::Module::train(on);
    module_.train(on);
  }

 private:
  torch::jit::Module module_;
};
TORCH_MODULE(ScriptedModel);

}  // namespace

torch::nn::Sequential BuildModel(const JobSpec& spec) {
  torch::nn::Sequential seq;
  if (spec.model.type == "torchscript") {
    seq->push_back(ScriptedModel(spec.model.path));
    return seq;
  }
  int64_t in = spec.InputFeatures();
  if (spec.model.type == "cnn") {
    // Rows of pixels -> [N, 1, side, side]; conv blocks with "same" padding; then flatten.
    int64_t side = spec.ImageSide(), channels = 1;
    seq->push_back(torch::nn::Unflatten(torch::nn::UnflattenOptions(1, {1, side, side})));
    for (const auto& block : spec.model.conv) {
      seq->push_back(torch::nn::Conv2d(
          torch::nn::Conv2dOptions(channels, block.channels, block.kernel).padding(block.kernel / 2)));
      // ReLU runs after the pool, on a k*k times smaller tensor (see CommutesWithMaxPool).
      // Neither layer has parameters, so the order does not change the model's state dict.
      const bool pool_first = block.pool > 1 && CommutesWithMaxPool(spec.model.activation);
      if (pool_first) seq->push_back(MaxPool(block.pool));
      AddActivation(seq, spec.model.activation);
      if (block.pool > 1 && !pool_first) seq->push_back(MaxPool(block.pool));
      channels = block.channels;
      side = side / block.pool;  // odd kernels (validated) keep the size before pooling
    }
    seq->push_back(torch::nn::Flatten());
    in = channels * side * side;
  }
  for (int width : spec.model.hidden) {
    seq->push_back(torch::nn::Linear(in, width));
    AddActivation(seq, spec.model.activation);
    if (spec.model.dropout > 0) seq->push_back(torch::nn::Dropout(spec.model.dropout));
    in = width;
  }
  seq->push_back(torch::nn::Linear(in, spec.OutputUnits()));
  if (spec.model.output_activation == "sigmoid") seq->push_back(torch::nn::Sigmoid());
  return seq;
}

Result<torch::nn::Sequential> TryBuildModel(const JobSpec& spec) {
  if (spec.model.type == "torchscript") {
    // Opened first with the rank's own rights, so that "Permission denied" names the path.
    std::ifstream probe(spec.model.path, std::ios::binary);
    if (!probe) return OpenFailure("model.path: cannot open " + spec.model.path);
  }
  try {
    return BuildModel(spec);
  } catch (const c10::Error& e) {
    return Status::InvalidArgument("model.path: cannot load TorchScript module " + spec.model.path +
                                   ": " + e.what_without_backtrace());
  }
}

torch::Tensor ComputeLoss(const JobSpec& spec, const torch::Tensor& output,
                          const torch::Tensor& labels) {
  if (spec.train.loss == "mse") return F::mse_loss(output.reshape({-1}), labels.to(torch::kFloat32));
  if (spec.train.loss == "binary_cross_entropy") {
    torch::Tensor target = labels.to(torch::kFloat32);
    torch::Tensor out = output.reshape({-1});
    if (spec.model.output_activation == "sigmoid") return F::binary_cross_entropy(out, target);
    return F::binary_cross_entropy_with_logits(out, target);
  }
  return F::cross_entropy(output, labels);
}

int64_t CountCorrect(const JobSpec& spec, const torch::Tensor& output, const torch::Tensor& labels) {
  if (spec.IsRegression()) return 0;  // no accuracy for regression
  torch::Tensor predicted;
  if (spec.train.loss == "binary_cross_entropy") {
    const double threshold = spec.model.output_activation == "sigmoid" ? 0.5 : 0.0;
    predicted = output.reshape({-1}).gt(threshold).to(torch::kInt64);
  } else {
    predicted = output.argmax(1);
  }
  return predicted.eq(labels).sum().item<int64_t>();
}

}  // namespace kiln::train
