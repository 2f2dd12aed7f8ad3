#include "worker/train/max_pool_kernel.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "worker/train/vector_clones.h"

namespace kiln::train {

namespace {

// Any k: the window in row order, LibTorch's rule (greater, or NaN, wins).
void MaxPoolPlane(const float* __restrict in, int64_t width, int64_t k, int64_t out_h,
                  int64_t out_w, float* __restrict out, uint8_t* __restrict argmax) {
  for (int64_t oh = 0; oh < out_h; ++oh) {
    for (int64_t ow = 0; ow < out_w; ++ow) {
      float best = -std::numeric_limits<float>::infinity();
      uint8_t at = 0;
      for (int64_t i = 0; i < k; ++i) {
        const float* row = in + (oh * k + i) * width + ow * k;
        for (int64_t j = 0; j < k; ++j) {
          const float v = row[j];
          if (v > best || v != v) best = v, at = static_cast<uint8_t>(i * k + j);
        }
      }
      out[oh * out_w + ow] = best;
      argmax[oh * out_w + ow] = at;
    }
  }
}

// The 2x2 case, the common one. The comparisons are branch-free (selects, not jumps): on real
// activations which element wins is unpredictable, and a mispredicted branch per comparison
// costs more than the whole window. Ties go to the first element in window order, as in
// LibTorch. Selects drop NaN, so a plane holding one is redone by the generic loop, which lets
// NaN win as LibTorch does.
void MaxPool2x2Plane(const float* __restrict in, int64_t width, int64_t out_h, int64_t out_w,
                     float* __restrict out, uint8_t* __restrict argmax) {
  int nan_seen = 0;
  for (int64_t oh = 0; oh < out_h; ++oh) {
    const float* row0 = in + 2 * oh * width;
    const float* row1 = row0 + width;
    float* out_row = out + oh * out_w;
    uint8_t* arg_row = argmax + oh * out_w;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const float a = row0[2 * ow], b = row0[2 * ow + 1], c = row1[2 * ow], d = row1[2 * ow + 1];
      nan_seen |= (a != a) | (b != b) | (c != c) | (d != d);
      const int b_wins = b > a, d_wins = d > c;
      const float top = std::max(a, b), bottom = std::max(c, d);  // max(x, y): x unless y > x
      const int bottom_wins = bottom > top;
      out_row[ow] = std::max(top, bottom);
      arg_row[ow] = static_cast<uint8_t>(b_wins + bottom_wins * (2 + d_wins - b_wins));
    }
  }
  if (nan_seen) MaxPoolPlane(in, width, 2, out_h, out_w, out, argmax);
}

}  // namespace

KILN_VECTOR_CLONES void MaxPoolForward(const float* in, int64_t planes, int64_t height,
                                       int64_t width, int64_t k, float* out, uint8_t* argmax) {
  const int64_t out_h = height / k, out_w = width / k;
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane_in = in + p * height * width;
    float* plane_out = out + p * out_h * out_w;
    uint8_t* plane_arg = argmax + p * out_h * out_w;
    if (k == 2) {
      MaxPool2x2Plane(plane_in, width, out_h, out_w, plane_out, plane_arg);
    } else {
      MaxPoolPlane(plane_in, width, k, out_h, out_w, plane_out, plane_arg);
    }
  }
}

KILN_VECTOR_CLONES void MaxPoolBackward(const float* grad_out, const uint8_t* argmax,
                                        int64_t planes, int64_t height, int64_t width,
                                        int64_t k, float* grad_in) {
  const int64_t out_h = height / k, out_w = width / k;
  if (k == 2 && height % 2 == 0 && width % 2 == 0) {
    // Every element belongs to a window: write each window whole, no zero-fill pass. The
    // gradient's bits are masked rather than selected (vectorizes; a NaN or infinite gradient
    // still reaches only the winner).
    for (int64_t p = 0; p < planes; ++p) {
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const float* __restrict g = grad_out + (p * out_h + oh) * out_w;
        const uint8_t* __restrict at = argmax + (p * out_h + oh) * out_w;
        float* __restrict row0 = grad_in + (p * height + 2 * oh) * width;
        float* __restrict row1 = row0 + width;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          uint32_t bits;
          std::memcpy(&bits, &g[ow], sizeof bits);
          const uint32_t win[4] = {bits & (0u - (at[ow] == 0)), bits & (0u - (at[ow] == 1)),
                                   bits & (0u - (at[ow] == 2)), bits & (0u - (at[ow] == 3))};
          std::memcpy(&row0[2 * ow], &win[0], 2 * sizeof(float));
          std::memcpy(&row1[2 * ow], &win[2], 2 * sizeof(float));
        }
      }
    }
    return;
  }
  std::memset(grad_in, 0, static_cast<size_t>(planes * height * width) * sizeof(float));
  for (int64_t p = 0; p < planes; ++p) {
    float* plane_in = grad_in + p * height * width;
    const float* plane_out = grad_out + p * out_h * out_w;
    const uint8_t* plane_arg = argmax + p * out_h * out_w;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t at = plane_arg[oh * out_w + ow];
        plane_in[(oh * k + at / k) * width + ow * k + at % k] = plane_out[oh * out_w + ow];
      }
    }
  }
}

}  // namespace kiln::train
