// Max pooling over non-overlapping k x k windows (stride k, no padding, rows and columns that do
// not fill a window are dropped), on float32 planes stored row-major one after another (NCHW).
//
// LibTorch 1.13's generic CPU max_pool2d for NCHW is not vectorized and recomputes indices per
// element: ~7.6 ms forward on the CNN's 64x32x28x28 activations on one core. These loops do the
// same work in a fraction of that. The winner of each window is kept as its offset inside the
// window (one byte), enough for the backward pass. NaN wins a window, as in LibTorch.
// No LibTorch here: callers pass raw arrays (and may split the planes across threads).
#pragma once

#include <cstdint>

namespace kiln::train {

constexpr int64_t kMaxPoolMaxWindow = 15;  // k * k must fit the one-byte offset

// in: planes x height x width; out and argmax: planes x (height / k) x (width / k).
void MaxPoolForward(const float* in, int64_t planes, int64_t height, int64_t width, int64_t k,
                    float* out, uint8_t* argmax);

// grad_in (planes x height x width) is fully written: each window's winner gets its output's
// gradient, every other element (and any dropped row or column) gets zero.
void MaxPoolBackward(const float* grad_out, const uint8_t* argmax, int64_t planes, int64_t height,
                     int64_t width, int64_t k, float* grad_in);

}  // namespace kiln::train
