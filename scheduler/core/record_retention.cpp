#include "scheduler/core/record_retention.h"

#include <algorithm>

namespace kiln::core {

std::optional<Millis> RetentionCutoff(Millis now_wall_ms, Millis keep_ms) {
  if (keep_ms <= 0) return std::nullopt;
  return now_wall_ms - keep_ms;
}

Millis PruneInterval(const RecordRetention& policy) {
  constexpr Millis kMax = 10 * 60 * 1000, kMin = 1000;
  Millis shortest = kMax * 10;
  for (Millis keep : {policy.logs_ms, policy.events_ms, policy.audit_ms, policy.uploads_ms}) {
    if (keep > 0) shortest = std::min(shortest, keep);
  }
  return std::clamp<Millis>(shortest / 10, kMin, kMax);
}

}  // namespace kiln::core
