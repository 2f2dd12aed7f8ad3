#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "worker/train/max_pool_kernel.h"

using kiln::train::MaxPoolBackward;
using kiln::train::MaxPoolForward;

namespace {

struct Pooled {
  std::vector<float> out;
  std::vector<uint8_t> argmax;
};

Pooled Pool(const std::vector<float>& in, int64_t planes, int64_t h, int64_t w, int64_t k) {
  Pooled p{std::vector<float>(planes * (h / k) * (w / k)), {}};
  p.argmax.resize(p.out.size());
  MaxPoolForward(in.data(), planes, h, w, k, p.out.data(), p.argmax.data());
  return p;
}

}  // namespace

TEST_CASE("2x2 max pooling keeps each window's maximum and where it was") {
  // One 4x4 plane; windows: {1,5,2,0} {3,-1,7,4} {-2,-3,-4,-5} {9,8,9,0}
  const std::vector<float> in = {1, 5, 3, -1,   //
                                 2, 0, 7, 4,    //
                                 -2, -3, 9, 8,  //
                                 -4, -5, 9, 0};
  Pooled p = Pool(in, 1, 4, 4, 2);
  CHECK(p.out == std::vector<float>{5, 7, -2, 9});
  // Offsets inside the window, row-major; the tie between the two 9s goes to the first.
  CHECK(p.argmax == std::vector<uint8_t>{1, 2, 0, 0});
}

TEST_CASE("max pooling drops rows and columns that do not fill a window") {
  std::vector<float> in(5 * 5);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  Pooled p = Pool(in, 1, 5, 5, 2);
  CHECK(p.out == std::vector<float>{6, 8, 16, 18});  // row 4 and column 4 (up to 24) unused

  std::vector<float> grad_in(in.size(), -1.0f);
  MaxPoolBackward(std::vector<float>{1, 2, 3, 4}.data(), p.argmax.data(), 1, 5, 5, 2,
                  grad_in.data());
  std::vector<float> expected(in.size(), 0.0f);
  expected[6] = 1, expected[8] = 2, expected[16] = 3, expected[18] = 4;
  CHECK(grad_in == expected);
}

TEST_CASE("a NaN wins its window, as in LibTorch") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> in = {1, nan, 0, 0,  //
                                 3, 2, 0, 0};
  Pooled p = Pool(in, 1, 2, 4, 2);
  CHECK(std::isnan(p.out[0]));
  CHECK(p.argmax[0] == 1);
  CHECK(p.out[1] == 0);
  CHECK(p.argmax[1] == 0);
}

TEST_CASE("larger windows and many planes pool each plane on its own") {
  const int64_t planes = 3, h = 6, w = 6, k = 3;
  std::vector<float> in(planes * h * w);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < h * w; ++i) {
      in[p * h * w + i] = static_cast<float>((i * 7 + p * 5) % 11);
    }
  }
  Pooled pooled = Pool(in, planes, h, w, k);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oh = 0; oh < h / k; ++oh) {
      for (int64_t ow = 0; ow < w / k; ++ow) {
        float best = -1;
        int64_t at = -1;
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < k; ++j) {
            const float v = in[p * h * w + (oh * k + i) * w + ow * k + j];
            if (v > best) best = v, at = i * k + j;
          }
        }
        const int64_t o = (p * (h / k) + oh) * (w / k) + ow;
        CHECK(pooled.out[o] == best);
        CHECK(pooled.argmax[o] == at);
      }
    }
  }
}

TEST_CASE("the backward pass routes each gradient to its window's winner only") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> in = {0, 1, 5, 4,  //
                                 3, 2, 6, 7};
  Pooled p = Pool(in, 1, 2, 4, 2);
  REQUIRE(p.argmax == std::vector<uint8_t>{2, 3});
  std::vector<float> grad_in(8, 99.0f);
  const std::vector<float> grad_out = {0.5f, inf};
  MaxPoolBackward(grad_out.data(), p.argmax.data(), 1, 2, 4, 2, grad_in.data());
  // An infinite gradient reaches only the winner; the others are exactly zero.
  CHECK(grad_in == std::vector<float>{0, 0, 0, 0, 0.5f, 0, 0, inf});
}
