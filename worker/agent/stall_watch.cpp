#include "worker/agent/stall_watch.h"

#include <algorithm>

namespace kiln::agent {

namespace {
constexpr size_t kStepSamples = 64;
}

StallWatch::StallWatch(std::optional<Millis> fixed_timeout_ms, bool whole_gang_here)
    : fixed_timeout_ms_(fixed_timeout_ms), whole_gang_here_(whole_gang_here) {}

void StallWatch::Observe(int rank, const StepBeacon& beacon, Millis now) {
  auto found = ranks_.find(rank);
  if (found == ranks_.end()) {
    ranks_[rank] = {beacon, now, now};
    return;
  }
  Rank& r = found->second;
  if (beacon.step > r.last.step && now > r.step_seen_at) {
    // Steps seen to advance between two reads: their mean time is one sample.
    step_ms_.push_back(static_cast<double>(now - r.step_seen_at) /
                       static_cast<double>(beacon.step - r.last.step));
    if (step_ms_.size() > kStepSamples) step_ms_.erase(step_ms_.begin());
    r.step_seen_at = now;
  }
  if (beacon.beat != r.last.beat || beacon.step != r.last.step) r.changed_at = now;
  r.last = beacon;
}

Millis StallWatch::TimeoutMs() const {
  if (fixed_timeout_ms_) return *fixed_timeout_ms_;
  if (step_ms_.empty()) return kMinimumTimeoutMs;
  std::vector<double> sorted = step_ms_;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<long>(sorted.size() / 2),
                   sorted.end());
  const double median = sorted[sorted.size() / 2];
  return std::max<Millis>(kMinimumTimeoutMs, static_cast<Millis>(median * kStepTimeFactor));
}

std::optional<StallVerdict> StallWatch::Check(Millis now) const {
  const Millis timeout = TimeoutMs();
  StallVerdict culprits;
  StallVerdict waiting;
  waiting.all_waiting = true;
  bool all_stalled = !ranks_.empty();
  for (const auto& [rank, r] : ranks_) {
    const Millis silent = now - r.changed_at;
    if (silent < timeout) {
      all_stalled = false;
      continue;
    }
    StallVerdict& into = r.last.waiting ? waiting : culprits;
    if (into.ranks.empty()) {
      into.step = r.last.step;
      into.silent_ms = silent;
    }
    into.ranks.push_back(rank);
  }
  if (!culprits.ranks.empty()) return culprits;
  if (!all_stalled || waiting.ranks.empty()) return std::nullopt;
  if (!whole_gang_here_ && waiting.silent_ms < 2 * timeout) return std::nullopt;
  return waiting;
}

std::string StallWatch::Describe(const StallVerdict& v, const std::string& node) {
  std::string ranks;
  for (size_t i = 0; i < v.ranks.size(); ++i) {
    ranks += (i ? ", " : "") + std::to_string(v.ranks[i]);
  }
  const std::string who = (v.ranks.size() == 1 ? "rank " : "ranks ") + ranks + " on " + node;
  const std::string when = std::to_string(v.silent_ms / 1000) + " s after step " +
                           std::to_string(v.step);
  if (v.all_waiting) {
    return "Stalled: " + who + " waited in the gradient allreduce for " + when +
           " (no rank reachable from this node was to blame; a rank elsewhere, or the network, "
           "hung)";
  }
  return "Stalled: " + who + " made no step for " + when;
}

}  // namespace kiln::agent
