#include "worker/serve/serve_stats.h"

#include <algorithm>
#include <cmath>

namespace kiln::serve {

namespace {
constexpr size_t kMaxSamples = 100000;
}

double Quantile(std::vector<double>& samples, double q) {
  if (samples.empty()) return 0;
  const size_t rank =
      static_cast<size_t>(std::ceil(q * static_cast<double>(samples.size()))) - (q > 0 ? 1 : 0);
  const size_t k = std::min(rank, samples.size() - 1);
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k),
                   samples.end());
  return samples[k];
}

void ServeStats::Record(double latency_ms, bool error) {
  std::lock_guard<std::mutex> lock(mu_);
  ++window_requests_;
  ++total_requests_;
  if (error) {
    ++window_errors_;
    ++total_errors_;
  }
  // Past the cap, keep every other sample: the quantiles stay those of the whole window.
  if (latencies_ms_.size() >= kMaxSamples) {
    for (size_t i = 0; i < latencies_ms_.size() / 2; ++i) latencies_ms_[i] = latencies_ms_[2 * i];
    latencies_ms_.resize(latencies_ms_.size() / 2);
  }
  latencies_ms_.push_back(latency_ms);
}

WindowStats ServeStats::Take() {
  std::vector<double> samples;
  WindowStats out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    samples.swap(latencies_ms_);
    out.requests = window_requests_;
    out.errors = window_errors_;
    window_requests_ = window_errors_ = 0;
  }
  out.p50_ms = Quantile(samples, 0.5);
  out.p99_ms = Quantile(samples, 0.99);
  return out;
}

int64_t ServeStats::total_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_requests_;
}

int64_t ServeStats::total_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_errors_;
}

}  // namespace kiln::serve
