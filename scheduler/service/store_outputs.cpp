// Store: what a job produces, its checkpoints (rows; the bytes are in CheckpointStore) and its
// log lines.
#include <sqlite3.h>

#include "scheduler/service/sqlite_statement.h"
#include <algorithm>
#include <variant>
#include <vector>

#include "scheduler/service/store.h"

namespace kiln::service {

using nlohmann::json;

Status Store::AddCheckpoint(const CheckpointRecord& c) {
  SqliteStatement s(db_,
                    "INSERT OR REPLACE INTO checkpoints (job_id, step, attempt, epoch, metrics, "
                    "bytes, sha256, created_at, path) VALUES (?,?,?,?,?,?,?,?,?)");
  s.Bind(1, c.job_id).Bind(2, c.step).Bind(3, c.attempt).Bind(4, c.epoch);
  s.Bind(5, c.metrics.dump()).Bind(6, c.bytes).Bind(7, c.sha256).Bind(8, c.created_at);
  s.Bind(9, c.path);
  return s.Run();
}

namespace {
constexpr const char* kCheckpointColumns =
    "job_id, attempt, step, epoch, metrics, bytes, sha256, created_at, path";

CheckpointRecord ReadCheckpoint(const SqliteStatement& s) {
  CheckpointRecord c{s.Int(0), s.Int(1), s.Int(2), s.Int(3),
                     json::parse(s.Text(4), nullptr, false), s.Int(5), s.Text(6), s.Int(7),
                     s.Text(8)};
  if (c.metrics.is_discarded()) c.metrics = json::object();
  return c;
}
}  // namespace

Result<std::vector<CheckpointRecord>> Store::Checkpoints(int64_t job_id) {
  std::string sql = std::string("SELECT ") + kCheckpointColumns +
                    " FROM checkpoints WHERE job_id=? ORDER BY step";
  SqliteStatement s(db_, sql.c_str());
  s.Bind(1, job_id);
  return s.Rows<CheckpointRecord>(ReadCheckpoint);
}

Result<std::optional<CheckpointRecord>> Store::FindCheckpoint(int64_t job_id, int64_t step) {
  std::string sql = std::string("SELECT ") + kCheckpointColumns + " FROM checkpoints WHERE job_id=?" +
                    (step >= 0 ? " AND step=?" : " ORDER BY step DESC LIMIT 1");
  SqliteStatement s(db_, sql.c_str());
  s.Bind(1, job_id);
  if (step >= 0) s.Bind(2, step);
  Status status;
  if (s.Step(&status)) return std::optional<CheckpointRecord>(ReadCheckpoint(s));
  if (!status.ok()) return status;
  return std::optional<CheckpointRecord>();
}

Status Store::DeleteCheckpoint(int64_t job_id, int64_t step) {
  SqliteStatement s(db_, "DELETE FROM checkpoints WHERE job_id=? AND step=?");
  s.Bind(1, job_id).Bind(2, step);
  return s.Run();
}

Result<int64_t> Store::CountCheckpointsWithSha(const std::string& sha256) {
  SqliteStatement s(db_, "SELECT COUNT(*) FROM checkpoints WHERE sha256=?");
  s.Bind(1, sha256);
  Status status;
  int64_t count = s.Step(&status) ? s.Int(0) : 0;
  if (!status.ok()) return status;
  return count;
}

Status Store::AppendLogs(int64_t job_id, int64_t attempt, Millis time,
                         const std::vector<std::string>& lines) {
  SqliteStatement last(db_, "SELECT COALESCE(MAX(seq), 0) FROM logs WHERE job_id=?");
  last.Bind(1, job_id);
  Status status;
  int64_t seq = last.Step(&status) ? last.Int(0) : 0;
  KILN_RETURN_IF_ERROR(status);
  SqliteStatement insert(db_, "INSERT INTO logs (job_id, seq, attempt, time, line) VALUES (?,?,?,?,?)");
  KILN_RETURN_IF_ERROR(insert.prepare_status());
  for (const auto& line : lines) {
    insert.Bind(1, job_id).Bind(2, ++seq).Bind(3, attempt).Bind(4, time).Bind(5, line);
    KILN_RETURN_IF_ERROR(insert.Run());
    insert.Reset();
  }
  return Status::Ok();
}

namespace {

// The WHERE clause of a log query after "job_id=?" and its values, in order.
std::string LogFilters(const LogQuery& q, std::vector<std::variant<int64_t, std::string>>* values) {
  std::string where;
  if (q.attempt > 0) {
    where += " AND attempt=?";
    values->push_back(q.attempt);
  }
  if (q.since > 0) {
    where += " AND time>=?";
    values->push_back(int64_t{q.since});
  }
  if (q.rank >= 0) {
    const std::string prefix = "[rank " + std::to_string(q.rank) + "]";
    where += " AND substr(line, 1, ?)=?";
    values->push_back(static_cast<int64_t>(prefix.size()));
    values->push_back(prefix);
  }
  return where;
}

void BindAll(SqliteStatement& s, int first,
             const std::vector<std::variant<int64_t, std::string>>& values) {
  for (const auto& v : values) {
    if (std::holds_alternative<int64_t>(v)) {
      s.Bind(first++, std::get<int64_t>(v));
    } else {
      s.Bind(first++, std::get<std::string>(v));
    }
  }
}

}  // namespace

Result<std::vector<LogLine>> Store::Logs(int64_t job_id, const LogQuery& query) {
  std::vector<std::variant<int64_t, std::string>> values;
  const std::string sql = "SELECT seq, attempt, time, line FROM logs WHERE job_id=? AND seq>?" +
                          LogFilters(query, &values) + " ORDER BY seq LIMIT ?";
  SqliteStatement s(db_, sql.c_str());
  s.Bind(1, job_id).Bind(2, query.after_seq);
  BindAll(s, 3, values);
  s.Bind(3 + static_cast<int>(values.size()), query.limit);
  return s.Rows<LogLine>([](const SqliteStatement& row) {
    return LogLine{row.Int(0), row.Int(1), row.Int(2), row.Text(3)};
  });
}

Result<int64_t> Store::LogCursor(int64_t job_id, int64_t attempt, const std::string& node) {
  SqliteStatement s(db_,
                    "SELECT next_line FROM log_cursors WHERE job_id=? AND attempt=? AND node=?",
                    cache_.get());
  s.Bind(1, job_id).Bind(2, attempt).Bind(3, node);
  Status status;
  if (s.Step(&status)) return s.Int(0);
  if (!status.ok()) return status;
  return int64_t{0};
}

Status Store::SetLogCursor(int64_t job_id, int64_t attempt, const std::string& node,
                           int64_t next_line) {
  SqliteStatement s(db_,
                    "INSERT OR REPLACE INTO log_cursors (job_id, attempt, node, next_line) "
                    "VALUES (?,?,?,?)",
                    cache_.get());
  s.Bind(1, job_id).Bind(2, attempt).Bind(3, node).Bind(4, next_line);
  return s.Run();
}

Result<int64_t> Store::SeqBeforeLast(int64_t job_id, const LogQuery& query, int64_t n) {
  std::vector<std::variant<int64_t, std::string>> values;
  if (n == 0) {  // nothing of what is there: start after the job's last line
    SqliteStatement last(db_, "SELECT COALESCE(MAX(seq), 0) FROM logs WHERE job_id=?");
    last.Bind(1, job_id);
    Status status;
    if (last.Step(&status)) return last.Int(0);
    if (!status.ok()) return status;
    return int64_t{0};
  }
  const std::string sql = "SELECT seq FROM logs WHERE job_id=?" + LogFilters(query, &values) +
                          " ORDER BY seq DESC LIMIT 1 OFFSET ?";
  SqliteStatement s(db_, sql.c_str());
  s.Bind(1, job_id);
  BindAll(s, 2, values);
  s.Bind(2 + static_cast<int>(values.size()), n - 1);
  Status status;
  if (s.Step(&status)) return s.Int(0) - 1;
  if (!status.ok()) return status;
  return int64_t{0};
}

}  // namespace kiln::service
