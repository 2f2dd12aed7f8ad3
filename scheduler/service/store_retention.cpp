// Store: pruning what only grows (logs and events of finished jobs, audit rows).
#include <sqlite3.h>

#include "scheduler/service/store.h"

namespace kiln::service {

Result<int64_t> Store::PruneJobLogs(Millis finished_from, Millis finished_before, int64_t limit) {
  SqliteStatement s(db_, "DELETE FROM logs WHERE rowid IN (SELECT l.rowid FROM jobs j "
                         "JOIN logs l ON l.job_id = j.id WHERE j.finished_at > 0 AND "
                         "j.finished_at >= ? AND j.finished_at < ? LIMIT ?)");
  s.Bind(1, finished_from).Bind(2, finished_before).Bind(3, limit);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<int64_t> Store::PruneJobEvents(Millis finished_from, Millis finished_before,
                                      int64_t limit) {
  SqliteStatement s(db_, "DELETE FROM job_events WHERE id IN (SELECT e.id FROM jobs j "
                         "JOIN job_events e ON e.job_id = j.id WHERE j.finished_at > 0 AND "
                         "j.finished_at >= ? AND j.finished_at < ? LIMIT ?)");
  s.Bind(1, finished_from).Bind(2, finished_before).Bind(3, limit);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<int64_t> Store::PruneAudit(Millis before, int64_t limit) {
  SqliteStatement s(db_, "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? "
                         "ORDER BY id LIMIT ?)");
  s.Bind(1, before).Bind(2, limit);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

}  // namespace kiln::service
