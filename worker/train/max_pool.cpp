#include "worker/train/max_pool.h"

#include <ATen/Parallel.h>

#include "worker/train/max_pool_kernel.h"

namespace kiln::train {

namespace {

constexpr int64_t kPlanesPerTask = 8;  // grain of the split across intra-op threads

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

class MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, int64_t k) {
    const torch::Tensor x = input.contiguous();
    const int64_t n = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
    torch::Tensor out = torch::empty({n, channels, height / k, width / k}, x.options());
    torch::Tensor argmax = torch::empty(out.sizes(), x.options().dtype(torch::kUInt8));
    const int64_t plane_in = height * width, plane_out = (height / k) * (width / k);
    const float* in_data = x.data_ptr<float>();
    float* out_data = out.data_ptr<float>();
    uint8_t* arg_data = argmax.data_ptr<uint8_t>();
    at::parallel_for(0, n * channels, kPlanesPerTask, [&](int64_t begin, int64_t end) {
      MaxPoolForward(in_data + begin * plane_in, end - begin, height, width, k,
                     out_data + begin * plane_out, arg_data + begin * plane_out);
    });
    ctx->save_for_backward({argmax});
    ctx->saved_data["k"] = k;
    ctx->saved_data["height"] = height;
    ctx->saved_data["width"] = width;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const torch::Tensor argmax = ctx->get_saved_variables()[0];
    const int64_t k = ctx->saved_data["k"].toInt();
    const int64_t height = ctx->saved_data["height"].toInt();
    const int64_t width = ctx->saved_data["width"].toInt();
    const torch::Tensor grad_out = grad_outputs[0].contiguous();
    const int64_t n = grad_out.size(0), channels = grad_out.size(1);
    torch::Tensor grad_in = torch::empty({n, channels, height, width}, grad_out.options());
    const int64_t plane_in = height * width, plane_out = grad_out.size(2) * grad_out.size(3);
    const float* out_data = grad_out.data_ptr<float>();
    const uint8_t* arg_data = argmax.data_ptr<uint8_t>();
    float* in_data = grad_in.data_ptr<float>();
    at::parallel_for(0, n * channels, kPlanesPerTask, [&](int64_t begin, int64_t end) {
      MaxPoolBackward(out_data + begin * plane_out, arg_data + begin * plane_out, end - begin,
                      height, width, k, in_data + begin * plane_in);
    });
    return {grad_in, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor MaxPoolImpl::forward(const torch::Tensor& x) {
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
      window_ <= kMaxPoolMaxWindow && x.size(2) >= window_ && x.size(3) >= window_) {
    return MaxPoolFunction::apply(x, window_);
  }
  return torch::nn::functional::max_pool2d(x, torch::nn::functional::MaxPool2dFuncOptions(window_));
}

void MaxPoolImpl::pretty_print(std::ostream& stream) const {
  stream << "kiln::train::MaxPool(kernel_size=" << window_ << ", stride=" << window_ << ")";
}

}  // namespace kiln::train
