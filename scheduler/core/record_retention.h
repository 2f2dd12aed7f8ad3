// How long the scheduler keeps what only grows: the logs and events of finished jobs, audit rows,
// and abandoned checkpoint uploads. Pure: the caller passes the time.
#pragma once

#include <optional>

#include "common/clock.h"

namespace kiln::core {

struct RecordRetention {
  // How long to keep each, in ms; 0 keeps it forever. Logs and events count from the job's end.
  Millis logs_ms = 30LL * 86400 * 1000;
  Millis events_ms = 90LL * 86400 * 1000;
  Millis audit_ms = 365LL * 86400 * 1000;
  Millis uploads_ms = 2LL * 86400 * 1000;  // an upload part untouched this long is abandoned
};

// Records older than the returned wall time go; nullopt when they are kept forever.
std::optional<Millis> RetentionCutoff(Millis now_wall_ms, Millis keep_ms);
// How often to prune: a tenth of the shortest retention, between 1 s and 10 minutes.
Millis PruneInterval(const RecordRetention& policy);

}  // namespace kiln::core
