// Store: pruning what only grows (logs and events of finished jobs, audit rows).
#include <sqlite3.h>

#include <algorithm>
#include <string>

#include "scheduler/service/store.h"

namespace kiln::service {

namespace {

// Deletes up to `limit` rows of `table` (keyed by `key`) that belong to jobs which finished in
// [from, before).
Result<int64_t> PruneRowsOfFinishedJobs(sqlite3* db, const char* table, const char* key,
                                        Millis from, Millis before, int64_t limit) {
  const std::string sql = std::string("DELETE FROM ") + table + " WHERE " + key +
                          " IN (SELECT t." + key + " FROM jobs j JOIN " + table +
                          " t ON t.job_id = j.id WHERE j.finished_at > 0 AND "
                          "j.finished_at >= ? AND j.finished_at < ? LIMIT ?)";
  SqliteStatement s(db, sql.c_str());
  s.Bind(1, from).Bind(2, before).Bind(3, limit);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db));
}

}  // namespace

Result<int64_t> Store::PruneJobLogs(Millis finished_from, Millis finished_before, int64_t limit) {
  auto cursors = PruneRowsOfFinishedJobs(db_, "log_cursors", "rowid", finished_from,
                                         finished_before, limit);
  if (!cursors.ok()) return cursors.status();
  return PruneRowsOfFinishedJobs(db_, "logs", "rowid", finished_from, finished_before, limit);
}

Result<int64_t> Store::PruneJobEvents(Millis finished_from, Millis finished_before,
                                      int64_t limit) {
  auto history = PruneRowsOfFinishedJobs(db_, "metric_history", "rowid", finished_from,
                                         finished_before, limit);
  if (!history.ok()) return history.status();
  auto events =
      PruneRowsOfFinishedJobs(db_, "job_events", "id", finished_from, finished_before, limit);
  if (!events.ok()) return events.status();
  return std::max(*history, *events);
}

Result<int64_t> Store::PruneAudit(Millis before, int64_t limit) {
  SqliteStatement s(db_, "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? "
                         "ORDER BY id LIMIT ?)");
  s.Bind(1, before).Bind(2, limit);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

}  // namespace kiln::service
