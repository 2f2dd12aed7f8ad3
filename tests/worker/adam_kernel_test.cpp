#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "worker/train/adam_kernel.h"

using kiln::train::AdamCoefficients;
using kiln::train::AdamUpdate;
using kiln::train::MakeAdamCoefficients;

namespace {

// The textbook update, in double precision, one element at a time.
struct Reference {
  double p, m = 0, v = 0;
  void Step(double g, int t, double lr, double b1, double b2, double eps, double wd,
            bool decoupled) {
    if (decoupled) {
      p *= 1 - lr * wd;
    } else {
      g += wd * p;
    }
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double m_hat = m / (1 - std::pow(b1, t)), v_hat = v / (1 - std::pow(b2, t));
    p -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
};

void CheckAgainstReference(double wd, bool decoupled) {
  const int n = 37;  // not a multiple of any vector width
  std::vector<float> param(n), grad(n), m(n, 0), v(n, 0);
  std::vector<Reference> ref;
  for (int i = 0; i < n; ++i) {
    param[i] = 0.1f * static_cast<float>(i - 18);
    ref.push_back({param[i]});
  }
  for (int t = 1; t <= 20; ++t) {
    for (int i = 0; i < n; ++i) grad[i] = std::sin(0.3f * static_cast<float>(i * t)) * 0.01f;
    const AdamCoefficients c = MakeAdamCoefficients(0.01, 0.9, 0.999, 1e-8, wd, decoupled, t);
    AdamUpdate(c, param.data(), grad.data(), m.data(), v.data(), n);
    for (int i = 0; i < n; ++i) ref[i].Step(grad[i], t, 0.01, 0.9, 0.999, 1e-8, wd, decoupled);
  }
  for (int i = 0; i < n; ++i) {
    INFO("element " << i);
    CHECK(param[i] == Approx(ref[i].p).margin(1e-6));
    CHECK(m[i] == Approx(ref[i].m).margin(1e-7));
    CHECK(v[i] == Approx(ref[i].v).margin(1e-9));
  }
}

}  // namespace

TEST_CASE("the fused Adam update follows the Adam equations") {
  CheckAgainstReference(0.0, false);
}

TEST_CASE("Adam's weight decay is added to the gradient") { CheckAgainstReference(0.1, false); }

TEST_CASE("AdamW's weight decay shrinks the parameter, apart from the gradient") {
  CheckAgainstReference(0.1, true);
}

TEST_CASE("the first Adam step moves every parameter by about the learning rate") {
  // With bias correction, step 1 gives m_hat / sqrt(v_hat) = sign(g).
  std::vector<float> param = {1, 1, 1}, grad = {0.5f, -2, 1e-3f}, m(3, 0), v(3, 0);
  AdamUpdate(MakeAdamCoefficients(0.01, 0.9, 0.999, 1e-8, 0, false, 1), param.data(), grad.data(),
             m.data(), v.data(), 3);
  CHECK(param[0] == Approx(0.99).epsilon(1e-5));
  CHECK(param[1] == Approx(1.01).epsilon(1e-5));
  CHECK(param[2] == Approx(0.99).epsilon(1e-4));
}

TEST_CASE("the fused Adam update rounds exactly like plain float code, whichever CPU clone runs") {
  // AdamUpdate runs an AVX-512, AVX2 or baseline clone (vector_clones.h); none may fuse
  // multiply-adds, so each gives what one-element-at-a-time float arithmetic gives (this file is
  // built with -ffp-contract=off too).
  const int n = 1001;
  std::vector<float> param(n), grad(n), m(n, 0), v(n, 0);
  for (int i = 0; i < n; ++i) param[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> p_ref = param, m_ref = m, v_ref = v;
  for (int t = 1; t <= 10; ++t) {
    for (int i = 0; i < n; ++i) grad[i] = std::cos(0.11f * static_cast<float>(i) + t) * 0.01f;
    const AdamCoefficients c = MakeAdamCoefficients(1e-3, 0.9, 0.999, 1e-8, 0.01, t % 2 == 0, t);
    AdamUpdate(c, param.data(), grad.data(), m.data(), v.data(), n);
    for (int i = 0; i < n; ++i) {
      const float g = grad[i] + c.l2 * p_ref[i];
      const float p = p_ref[i] * c.decay;
      m_ref[i] = m_ref[i] * c.beta1 + c.one_minus_beta1 * g;
      v_ref[i] = v_ref[i] * c.beta2 + c.one_minus_beta2 * g * g;
      p_ref[i] = p - c.step_size * (m_ref[i] / (std::sqrt(v_ref[i]) / c.bias2_sqrt + c.eps));
    }
  }
  CHECK(param == p_ref);
  CHECK(m == m_ref);
  CHECK(v == v_ref);
}
