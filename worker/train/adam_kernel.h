// The Adam and AdamW update of one float32 parameter, fused into a single pass over memory.
//
// LibTorch's Adam runs about eight tensor operations per parameter (two of them allocate a
// temporary as large as the parameter), so a 3.2M-weight layer streams ~250 MB per step; this
// loop reads param, grad and both moments once and writes param and the moments once (~90 MB).
// The arithmetic is LibTorch 1.13's, in the same order, in float32 (LibTorch's vectorized ops may
// fuse multiply-adds and so round differently; results agree to float rounding, not bit for bit):
//   g  = grad + l2 * param                     (Adam's weight_decay; l2 = 0 for AdamW)
//   param *= decay                              (AdamW: 1 - lr * weight_decay; 1 for Adam)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g * g
//   param -= step_size * m / (sqrt(v) / bias2_sqrt + eps)
// No LibTorch here: the caller hands raw, contiguous arrays (and may split them across threads).
#pragma once

#include <cstdint>

namespace kiln::train {

struct AdamCoefficients {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float one_minus_beta1 = 0.1f;    // rounded from double, as LibTorch does: 1 - 0.999f is not
  float one_minus_beta2 = 0.001f;  // 0.001f, and the error would compound into v
  float eps = 1e-8f;
  float step_size = 0;   // lr / (1 - beta1^t)
  float bias2_sqrt = 1;  // sqrt(1 - beta2^t)
  float l2 = 0;          // Adam's weight_decay, added to the gradient
  float decay = 1;       // AdamW's decoupled decay factor
};

// Coefficients for optimizer step `step` (1 for the first update).
AdamCoefficients MakeAdamCoefficients(double lr, double beta1, double beta2, double eps,
                                      double weight_decay, bool decoupled_weight_decay,
                                      int64_t step);

// Updates n elements in place. The arrays must not overlap.
void AdamUpdate(const AdamCoefficients& c, float* param, const float* grad, float* exp_avg,
                float* exp_avg_sq, int64_t n);

}  // namespace kiln::train
