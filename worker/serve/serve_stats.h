// A replica's request counts and latencies, per report window: requests/s and p50/p99 for
// `kiln services`, and totals for /metrics. Thread-safe; the window is taken by Take().
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

namespace kiln::serve {

// The q-quantile (0..1) of `samples` by nearest rank; 0 when empty. Reorders `samples`.
double Quantile(std::vector<double>& samples, double q);

struct WindowStats {
  int64_t requests = 0;  // answered in the window, errors included
  int64_t errors = 0;    // 4xx and 5xx
  double p50_ms = 0, p99_ms = 0;
};

class ServeStats {
 public:
  void Record(double latency_ms, bool error);
  // The window since the last Take, and a new one.
  WindowStats Take();
  int64_t total_requests() const;
  int64_t total_errors() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> latencies_ms_;  // at most kMaxSamples per window (evenly thinned past it)
  int64_t window_requests_ = 0, window_errors_ = 0;
  int64_t total_requests_ = 0, total_errors_ = 0;
};

}  // namespace kiln::serve
