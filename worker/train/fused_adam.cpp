#include "worker/train/fused_adam.h"

#include <sstream>
#include <type_traits>

#include <ATen/Parallel.h>

#include "worker/train/adam_kernel.h"

namespace kiln::train {

namespace {

constexpr int64_t kElementsPerTask = 1 << 16;  // grain of the split across intra-op threads

// Dense, contiguous float32 in host memory: what the kernel takes.
bool Plain(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && !t.is_sparse() &&
         t.is_contiguous();
}

// The key LibTorch's optimizers file a parameter's state under: the address of its TensorImpl,
// as text in LibTorch 1.13 (c10::guts::to_string, an ostream of the pointer), the pointer itself
// in LibTorch 2.
template <typename Key>
Key StateKey(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

// Whether the kernel can take this whole step: no amsgrad, and every parameter with a gradient,
// the gradient and any moments already made are Plain. Otherwise the step is LibTorch's own.
template <typename Options, typename State, typename StateMap>
bool Fusable(const std::vector<torch::optim::OptimizerParamGroup>& groups,
             const StateMap& states) {
  for (const auto& group : groups) {
    if (static_cast<const Options&>(group.options()).amsgrad()) return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (!Plain(p) || !Plain(p.grad())) return false;
      auto found = states.find(StateKey<typename StateMap::key_type>(p));
      if (found == states.end()) continue;
      const auto& state = static_cast<const State&>(*found->second);
      if (!Plain(state.exp_avg()) || !Plain(state.exp_avg_sq())) return false;
    }
  }
  return true;
}

// One fused step over every parameter with a gradient. State objects are created and keyed
// exactly as LibTorch's Adam/AdamW do, so the base class serializes them (and could take over).
template <typename Options, typename State, typename StateMap>
void FusedStep(std::vector<torch::optim::OptimizerParamGroup>& groups, StateMap& states,
               bool decoupled_weight_decay) {
  torch::NoGradGuard no_grad;
  for (auto& group : groups) {
    auto& options = static_cast<Options&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = StateKey<typename StateMap::key_type>(p);
      auto found = states.find(key);
      if (found == states.end()) {
        auto created = std::make_unique<State>();
        created->step(0);
        created->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        created->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = states.emplace(key, std::move(created)).first;
      }
      auto& state = static_cast<State&>(*found->second);
      state.step(state.step() + 1);
      const AdamCoefficients c = MakeAdamCoefficients(
          options.lr(), std::get<0>(options.betas()), std::get<1>(options.betas()), options.eps(),
          options.weight_decay(), decoupled_weight_decay, state.step());
      float* param = p.data_ptr<float>();
      const float* g = p.grad().data_ptr<float>();
      torch::Tensor& exp_avg = state.exp_avg();
      torch::Tensor& exp_avg_sq = state.exp_avg_sq();
      float* m = exp_avg.data_ptr<float>();
      float* v = exp_avg_sq.data_ptr<float>();
      at::parallel_for(0, p.numel(), kElementsPerTask, [&](int64_t begin, int64_t end) {
        AdamUpdate(c, param + begin, g + begin, m + begin, v + begin, end - begin);
      });
      // Written behind LibTorch's back: count it as an in-place update, so autograd still
      // notices a graph that saved the old values.
      p.unsafeGetTensorImpl()->bump_version();
      exp_avg.unsafeGetTensorImpl()->bump_version();
      exp_avg_sq.unsafeGetTensorImpl()->bump_version();
    }
  }
}

torch::Tensor RunClosure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace

torch::Tensor FusedAdam::step(LossClosure closure) {
  using Options = torch::optim::AdamOptions;
  using State = torch::optim::AdamParamState;
  torch::Tensor loss = RunClosure(closure);
  if (!Fusable<Options, State>(param_groups_, state_)) {
    torch::optim::Adam::step();  // the closure has run
    return loss;
  }
  FusedStep<Options, State>(param_groups_, state_, /*decoupled_weight_decay=*/false);
  return loss;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  using Options = torch::optim::AdamWOptions;
  using State = torch::optim::AdamWParamState;
  torch::Tensor loss = RunClosure(closure);
  if (!Fusable<Options, State>(param_groups_, state_)) {
    torch::optim::AdamW::step();  // the closure has run
    return loss;
  }
  FusedStep<Options, State>(param_groups_, state_, /*decoupled_weight_decay=*/true);
  return loss;
}

}  // namespace kiln::train
