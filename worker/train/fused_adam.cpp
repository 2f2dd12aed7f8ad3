#include "worker/train/fused_adam.h"

#include <sstream>
#include <type_traits>

#include <ATen/Parallel.h>

#include "worker/train/adam_kernel.h"

namespace kiln::train {

namespace {

constexpr int64_t kElementsPerTask = 1 << 16;  // grain of the split across intra-op threads

// Whether the kernel can take these two tensors (a parameter and its gradient, or the two
// moments): dense, contiguous float32 in host memory.
bool Fusable(const torch::Tensor& a, const torch::Tensor& b, bool amsgrad) {
  auto plain = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && !t.is_sparse() &&
           t.is_contiguous();
  };
  return !amsgrad && plain(a) && plain(b);
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

// One optimizer step over every parameter with a gradient. State objects are created and keyed
// exactly as LibTorch's Adam/AdamW do, so the base class serializes them.
template <typename Options, typename State, typename StateMap>
void Step(std::vector<torch::optim::OptimizerParamGroup>& groups, StateMap& states,
          bool decoupled_weight_decay) {
  torch::NoGradGuard no_grad;
  for (auto& group : groups) {
    auto& options = static_cast<Options&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      torch::Tensor grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "Adam does not support sparse gradients");
      const auto key = StateKey<typename StateMap::key_type>(p);
      auto found = states.find(key);
      if (found == states.end()) {
        auto created = std::make_unique<State>();
        created->step(0);
        created->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        created->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (options.amsgrad()) {
          created->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        }
        found = states.emplace(key, std::move(created)).first;
      }
      auto& state = static_cast<State&>(*found->second);
      state.step(state.step() + 1);
      const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
      const AdamCoefficients c =
          MakeAdamCoefficients(options.lr(), beta1, beta2, options.eps(), options.weight_decay(),
                               decoupled_weight_decay, state.step());
      torch::Tensor& exp_avg = state.exp_avg();
      torch::Tensor& exp_avg_sq = state.exp_avg_sq();
      if (Fusable(p, grad, options.amsgrad()) && Fusable(exp_avg, exp_avg_sq, false)) {
        float* param = p.data_ptr<float>();
        const float* g = grad.data_ptr<float>();
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
        continue;
      }
      // LibTorch 1.13's arithmetic, for what the kernel cannot take.
      if (decoupled_weight_decay) {
        if (options.weight_decay() != 0) p.mul_(c.decay);
      } else if (options.weight_decay() != 0) {
        grad = grad.add(p, options.weight_decay());
      }
      exp_avg.mul_(beta1).add_(grad, 1 - beta1);
      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      torch::Tensor denom;
      if (options.amsgrad()) {
        torch::Tensor& max_exp_avg_sq = state.max_exp_avg_sq();
        torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
        denom = (max_exp_avg_sq.sqrt() / c.bias2_sqrt).add_(options.eps());
      } else {
        denom = (exp_avg_sq.sqrt() / c.bias2_sqrt).add_(options.eps());
      }
      p.addcdiv_(exp_avg, denom, -c.step_size);
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
  torch::Tensor loss = RunClosure(closure);
  Step<torch::optim::AdamOptions, torch::optim::AdamParamState>(param_groups_, state_, false);
  return loss;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::Tensor loss = RunClosure(closure);
  Step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(param_groups_, state_, true);
  return loss;
}

}  // namespace kiln::train
