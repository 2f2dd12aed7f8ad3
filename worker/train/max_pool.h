// MaxPool: a drop-in for torch::nn::MaxPool2d(k) (window k, stride k, no padding) that runs the
// kernels of max_pool_kernel.h on float32 CPU input, through its own autograd function, and
// falls back to LibTorch's max_pool2d for anything else (CUDA, other dtypes, windows over 15).
// It has no parameters or buffers, so a model's state dict is the same with either.
#pragma once

#include <torch/torch.h>

namespace kiln::train {

class MaxPoolImpl : public torch::nn::Module {
 public:
  explicit MaxPoolImpl(int64_t window) : window_(window) {}
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

 private:
  int64_t window_;
};
TORCH_MODULE(MaxPool);

}  // namespace kiln::train
