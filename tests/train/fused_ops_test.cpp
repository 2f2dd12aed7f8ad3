// LibTorch-level checks of kiln's own training kernels against LibTorch's: the fused Adam/AdamW
// against torch::optim::Adam/AdamW, MaxPool against max_pool2d, and the CNN that uses both
// against the same net built the conventional way.
// LibTorch's c10 logging defines its own CHECK (a log stream that never fails a test), so
// Catch's macros are used with their CATCH_ prefix here.
#define CATCH_CONFIG_PREFIX_ALL
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "common/job_spec.h"
#include "worker/train/fused_adam.h"
#include "worker/train/max_pool.h"
#include "worker/train/model.h"

using kiln::train::FusedAdam;
using kiln::train::FusedAdamW;
using kiln::train::MaxPool;

namespace {

std::vector<torch::Tensor> FreshParams() {
  torch::manual_seed(7);
  return {torch::randn({33, 17}).requires_grad_(), torch::randn({17}).requires_grad_(),
          torch::randn({5, 3, 4}).requires_grad_()};
}

std::vector<torch::Tensor> Clone(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

// A deterministic gradient for step t, the same for every copy of the parameters.
void SetGrads(std::vector<torch::Tensor>& params, int t) {
  for (size_t i = 0; i < params.size(); ++i) {
    torch::NoGradGuard no_grad;
    params[i].mutable_grad() =
        torch::sin(params[i].detach() * 3 + static_cast<double>(t + static_cast<int>(i)));
  }
}

double MaxDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  }
  return worst;
}

template <typename Fused, typename Reference, typename Options>
void CheckMatchesLibTorch(const Options& options) {
  std::vector<torch::Tensor> fused_params = FreshParams(), ref_params = Clone(fused_params);
  Fused fused(fused_params, options);
  Reference reference(ref_params, options);
  for (int t = 0; t < 25; ++t) {
    SetGrads(fused_params, t);
    SetGrads(ref_params, t);
    fused.step();
    reference.step();
  }
  // Float rounding differs (one fused expression against separate tensor operations).
  CATCH_CHECK(MaxDifference(fused_params, ref_params) < 1e-5);
  CATCH_CHECK(MaxDifference(fused_params, FreshParams()) > 1e-2);  // the parameters did move
}

}  // namespace

CATCH_TEST_CASE("the fused Adam matches LibTorch's Adam") {
  CheckMatchesLibTorch<FusedAdam, torch::optim::Adam>(torch::optim::AdamOptions(0.01));
  CheckMatchesLibTorch<FusedAdam, torch::optim::Adam>(
      torch::optim::AdamOptions(0.01).weight_decay(0.05));
}

CATCH_TEST_CASE("the fused AdamW matches LibTorch's AdamW") {
  CheckMatchesLibTorch<FusedAdamW, torch::optim::AdamW>(
      torch::optim::AdamWOptions(0.01).weight_decay(0.05));
}

CATCH_TEST_CASE("the fused Adam falls back to LibTorch's arithmetic for amsgrad") {
  CheckMatchesLibTorch<FusedAdam, torch::optim::Adam>(
      torch::optim::AdamOptions(0.01).amsgrad(true));
}

CATCH_TEST_CASE("the fused Adam files its state under LibTorch's keys") {
  std::vector<torch::Tensor> params = FreshParams();
  FusedAdam fused(params, torch::optim::AdamOptions(0.01));
  SetGrads(params, 0);
  fused.step();
  CATCH_REQUIRE(fused.state().size() == params.size());
  // LibTorch's own step on the same object finds that state instead of making its own.
  fused.torch::optim::Adam::step();
  CATCH_CHECK(fused.state().size() == params.size());
}

CATCH_TEST_CASE("fused Adam state saves and loads like LibTorch's, and resumes bit-exactly") {
  std::vector<torch::Tensor> params = FreshParams();
  FusedAdam straight(params, torch::optim::AdamOptions(0.01));
  for (int t = 0; t < 5; ++t) {
    SetGrads(params, t);
    straight.step();
  }
  std::stringstream saved;
  {
    torch::serialize::OutputArchive archive;
    straight.save(archive);
    archive.save_to(saved);
  }
  std::vector<torch::Tensor> resumed_params = Clone(params);
  FusedAdam resumed(resumed_params, torch::optim::AdamOptions(0.01));
  {
    torch::serialize::InputArchive archive;
    archive.load_from(saved);
    resumed.load(archive);
  }
  for (int t = 5; t < 10; ++t) {
    SetGrads(params, t);
    SetGrads(resumed_params, t);
    straight.step();
    resumed.step();
  }
  CATCH_CHECK(MaxDifference(params, resumed_params) == 0);

  // LibTorch's own Adam reads the same archive (checkpoints stay interchangeable).
  saved.clear();
  saved.seekg(0);
  std::vector<torch::Tensor> torch_params = Clone(params);
  torch::optim::Adam plain(torch_params, torch::optim::AdamOptions(0.01));
  torch::serialize::InputArchive archive;
  archive.load_from(saved);
  plain.load(archive);
  CATCH_CHECK(plain.state().size() == params.size());
}

CATCH_TEST_CASE("MaxPool equals LibTorch's max_pool2d, forward and backward") {
  torch::manual_seed(3);
  for (int64_t k : {2, 3}) {
    for (auto sizes : std::vector<std::vector<int64_t>>{{4, 3, 12, 12}, {2, 5, 9, 10}}) {
      CATCH_INFO("window " << k << ", height " << sizes[2] << ", width " << sizes[3]);
      torch::Tensor x = torch::randn(sizes).requires_grad_();
      torch::Tensor x_ref = x.detach().clone().requires_grad_();
      MaxPool pool(k);
      torch::Tensor y = pool->forward(x);
      torch::Tensor y_ref = torch::max_pool2d(x_ref, {k, k});
      CATCH_REQUIRE(y.sizes() == y_ref.sizes());
      CATCH_CHECK(torch::equal(y, y_ref));
      torch::Tensor g = torch::randn(y.sizes());
      y.backward(g);
      y_ref.backward(g);
      CATCH_CHECK(torch::equal(x.grad(), x_ref.grad()));
    }
  }
  // Other dtypes go through LibTorch.
  torch::Tensor d = torch::randn({1, 2, 4, 4}, torch::kFloat64);
  CATCH_CHECK(torch::equal(MaxPool(2)->forward(d), torch::max_pool2d(d, {2, 2})));
}

CATCH_TEST_CASE("the CNN has the conventional net's outputs and gradients, bit for bit") {
  // With relu kiln pools first; with tanh it keeps the usual order. Either way the result must be
  // conv, activation, LibTorch's max_pool2d.
  for (const std::string activation : {"relu", "tanh"}) {
    CATCH_INFO(activation);
    auto parsed = kiln::ParseJobSpec(nlohmann::json::parse(R"({
      "name": "cnn", "resources": {"ranks": 1},
      "model": {"type": "cnn", "conv": [{"channels": 4, "kernel": 3, "pool": 2},
                                        {"channels": 6, "kernel": 3, "pool": 2}],
                "hidden": [16]},
      "data": {"type": "fashion-mnist", "path": "/nonexistent"},
      "train": {"epochs": 1, "batch_size": 8, "loss": "cross_entropy",
                "optimizer": {"type": "adam", "lr": 0.001}}})"));
    CATCH_REQUIRE(parsed.ok());
    parsed.spec.model.activation = activation;
    torch::manual_seed(11);
    torch::nn::Sequential kiln_net = kiln::train::BuildModel(parsed.spec);
    auto act = [&]() -> torch::nn::AnyModule {
      if (activation == "relu") return torch::nn::AnyModule(torch::nn::ReLU());
      return torch::nn::AnyModule(torch::nn::Tanh());
    };
    torch::nn::Sequential conventional;
    conventional->push_back(torch::nn::Unflatten(torch::nn::UnflattenOptions(1, {1, 28, 28})));
    int64_t channels = 1;
    for (int64_t out : {4, 6}) {
      conventional->push_back(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out, 3).padding(1)));
      conventional->push_back(act());
      conventional->push_back(torch::nn::MaxPool2d(2));
      channels = out;
    }
    conventional->push_back(torch::nn::Flatten());
    conventional->push_back(torch::nn::Linear(6 * 7 * 7, 16));
    conventional->push_back(act());
    conventional->push_back(torch::nn::Linear(16, 10));
    // Same parameter names, so the state dicts line up.
    auto kiln_params = kiln_net->named_parameters();
    auto conventional_params = conventional->named_parameters();
    CATCH_REQUIRE(kiln_params.size() == conventional_params.size());
    {
      torch::NoGradGuard no_grad;
      for (const auto& p : kiln_params) conventional_params[p.key()].copy_(p.value());
    }
    torch::Tensor x = torch::randn({8, 784});
    torch::Tensor labels = torch::randint(0, 10, {8});
    torch::Tensor out = kiln_net->forward(x), out_ref = conventional->forward(x);
    CATCH_CHECK(torch::equal(out, out_ref));
    torch::nn::functional::cross_entropy(out, labels).backward();
    torch::nn::functional::cross_entropy(out_ref, labels).backward();
    for (const auto& p : kiln_params) {
      CATCH_INFO(p.key());
      CATCH_CHECK(torch::equal(p.value().grad(), conventional_params[p.key()].grad()));
    }
  }
}
