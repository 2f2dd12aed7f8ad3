// Store: a job's history, its events (every transition) and its attempts (where each ran, how
// it ended).
#include <sqlite3.h>

#include <string>

#include "scheduler/service/store.h"

namespace kiln::service {

using nlohmann::json;

namespace {
json NodesOf(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json::array() : j;
}
}  // namespace

Status Store::AddEvent(const JobEventRecord& e) {
  SqliteStatement s(db_,
                    "INSERT INTO job_events (job_id, time, from_state, to_state, reason) "
                    "VALUES (?,?,?,?,?)",
                    cache_.get());
  s.Bind(1, e.job_id).Bind(2, e.time).Bind(3, e.from_state).Bind(4, e.to_state).Bind(5, e.reason);
  return s.Run();
}

Result<std::vector<JobEventRecord>> Store::Events(int64_t job_id) {
  SqliteStatement s(db_,
                    "SELECT job_id, time, from_state, to_state, reason FROM job_events "
                    "WHERE job_id=? ORDER BY id");
  s.Bind(1, job_id);
  return s.Rows<JobEventRecord>([](const SqliteStatement& row) {
    return JobEventRecord{row.Int(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4)};
  });
}

Status Store::AddAttempt(const AttemptRecord& a) {
  SqliteStatement s(db_,
                    "INSERT OR REPLACE INTO attempts (job_id, attempt, nodes, started_at, ended_at, "
                    "outcome, exit_code, reason, resumed_from_step) VALUES (?,?,?,?,?,?,?,?,?)",
                    cache_.get());
  s.Bind(1, a.job_id).Bind(2, a.attempt).Bind(3, a.nodes.dump()).Bind(4, a.started_at);
  s.Bind(5, a.ended_at).Bind(6, a.outcome).Bind(7, a.exit_code).Bind(8, a.reason);
  s.Bind(9, a.resumed_from_step);
  return s.Run();
}

Status Store::EndAttempt(int64_t job_id, int64_t attempt, Millis ended_at,
                         const std::string& outcome, const std::string& reason) {
  SqliteStatement s(db_,
                    "UPDATE attempts SET ended_at=?, outcome=?, reason=? "
                    "WHERE job_id=? AND attempt=? AND ended_at=0",
                    cache_.get());
  s.Bind(1, ended_at).Bind(2, outcome).Bind(3, reason).Bind(4, job_id).Bind(5, attempt);
  return s.Run();
}

Status Store::SetAttemptExitCode(int64_t job_id, int64_t attempt, int64_t exit_code,
                                 const std::string& note) {
  SqliteStatement s(db_,
                    "UPDATE attempts SET exit_code=?, reason=CASE WHEN ?='' THEN reason "
                    "WHEN reason='' THEN ? ELSE reason || '; ' || ? END "
                    "WHERE job_id=? AND attempt=? AND exit_code=-1",
                    cache_.get());
  s.Bind(1, exit_code).Bind(2, note).Bind(3, note).Bind(4, note).Bind(5, job_id).Bind(6, attempt);
  return s.Run();
}

Result<std::vector<AttemptRecord>> Store::Attempts(int64_t job_id) {
  SqliteStatement s(db_,
                    "SELECT job_id, attempt, nodes, started_at, ended_at, outcome, exit_code, "
                    "reason, resumed_from_step FROM attempts WHERE job_id=? ORDER BY attempt");
  s.Bind(1, job_id);
  return s.Rows<AttemptRecord>([](const SqliteStatement& row) {
    return AttemptRecord{row.Int(0), row.Int(1), NodesOf(row.Text(2)),
                         row.Int(3), row.Int(4), row.Text(5), row.Int(6), row.Text(7),
                         row.Int(8)};
  });
}

}  // namespace kiln::service
