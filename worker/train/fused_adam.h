// Adam and AdamW whose per-parameter update is one fused pass (adam_kernel.h) instead of
// LibTorch's chain of tensor operations. They are LibTorch's optimizers in every other respect:
// the same options, the same per-parameter state objects under the same keys, so save/load and
// checkpoints are unchanged and interchangeable with torch::optim::Adam/AdamW. A step the kernel
// cannot take whole (a parameter, gradient or moment not contiguous float32 on the CPU, e.g. on
// CUDA; or amsgrad) is LibTorch's own step.
#pragma once

#include <torch/torch.h>

namespace kiln::train {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace kiln::train
