#include "worker/train/adam_kernel.h"

#include <cmath>

#include "worker/train/vector_clones.h"

namespace kiln::train {

AdamCoefficients MakeAdamCoefficients(double lr, double beta1, double beta2, double eps,
                                      double weight_decay, bool decoupled_weight_decay,
                                      int64_t step) {
  AdamCoefficients c;
  c.beta1 = static_cast<float>(beta1);
  c.beta2 = static_cast<float>(beta2);
  c.one_minus_beta1 = static_cast<float>(1 - beta1);
  c.one_minus_beta2 = static_cast<float>(1 - beta2);
  c.eps = static_cast<float>(eps);
  const double bias1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1 - std::pow(beta2, static_cast<double>(step));
  c.step_size = static_cast<float>(lr / bias1);
  c.bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  if (decoupled_weight_decay) {
    c.decay = static_cast<float>(1 - lr * weight_decay);
  } else {
    c.l2 = static_cast<float>(weight_decay);
  }
  return c;
}

KILN_VECTOR_CLONES void AdamUpdate(const AdamCoefficients& c, float* __restrict param, const float* __restrict grad,
                float* __restrict exp_avg, float* __restrict exp_avg_sq, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + c.l2 * param[i];
    const float p = param[i] * c.decay;
    const float m = exp_avg[i] * c.beta1 + c.one_minus_beta1 * g;
    const float v = exp_avg_sq[i] * c.beta2 + c.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p - c.step_size * (m / (std::sqrt(v) / c.bias2_sqrt + c.eps));
  }
}

}  // namespace kiln::train
