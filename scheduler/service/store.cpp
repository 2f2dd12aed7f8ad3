#include "scheduler/service/store.h"

#include <sqlite3.h>

#include <algorithm>

#include "scheduler/service/sqlite_statement.h"

namespace kiln::service {

using nlohmann::json;

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  attempt INTEGER NOT NULL DEFAULT 0,
  ranks INTEGER NOT NULL,
  gpus_per_rank INTEGER NOT NULL,
  max_retries INTEGER NOT NULL,
  node TEXT NOT NULL DEFAULT '',
  submitted_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL DEFAULT 0,
  finished_at INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '{}',
  exit_code INTEGER NOT NULL DEFAULT 0,
  resume_job INTEGER NOT NULL DEFAULT 0,
  resume_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS usage (
  user TEXT PRIMARY KEY,
  usage REAL NOT NULL,
  as_of INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs(finished_at);
CREATE TABLE IF NOT EXISTS job_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id),
  time INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id);
CREATE TABLE IF NOT EXISTS nodes (
  name TEXT PRIMARY KEY,
  slots INTEGER NOT NULL,
  memory_bytes INTEGER NOT NULL,
  gpus INTEGER NOT NULL,
  state TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
  job_id INTEGER NOT NULL REFERENCES jobs(id),
  step INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  metrics TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  path TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, step)
);
CREATE TABLE IF NOT EXISTS attempts (
  job_id INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  nodes TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL DEFAULT 0,
  outcome TEXT NOT NULL,
  exit_code INTEGER NOT NULL DEFAULT -1,
  reason TEXT NOT NULL DEFAULT '',
  resumed_from_step INTEGER NOT NULL DEFAULT -1,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  admin INTEGER NOT NULL,
  token_sha256 TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS worker_keys (
  public_key TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_worker_keys (
  public_key TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  revoked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  user TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(time);
CREATE TABLE IF NOT EXISTS logs (
  job_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  time INTEGER NOT NULL,
  line TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS log_cursors (
  job_id INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  node TEXT NOT NULL,
  next_line INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt, node)
);
CREATE TABLE IF NOT EXISTS metric_history (
  job_id INTEGER NOT NULL,
  series TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  time INTEGER NOT NULL,
  point TEXT NOT NULL,
  PRIMARY KEY (job_id, series, ordinal)
);
CREATE TABLE IF NOT EXISTS services (
  name TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS placements (
  job_id INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  node TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (job_id, attempt, node)
);
)sql";

constexpr const char* kJobColumns =
    "id, request_id, name, spec, state, reason, attempt, ranks, gpus_per_rank, max_retries, node, "
    "submitted_at, started_at, finished_at, progress, exit_code, resume_job, resume_step, user, "
    "priority, held, time_limit_ms, depends_on, allocation, requeues, held_by_admin, array_job, "
    "array_index, array";

json ParseOr(const std::string& text, json fallback) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

JobRecord ReadJob(const SqliteStatement& s) {
  JobRecord j;
  j.id = s.Int(0);
  j.request_id = s.Text(1);
  j.name = s.Text(2);
  j.spec = json::parse(s.Text(3), nullptr, false);
  j.state = core::ParseJobState(s.Text(4)).value_or(core::JobState::kFailed);
  j.reason = s.Text(5);
  j.attempt = s.Int(6);
  j.ranks = s.Int(7);
  j.gpus_per_rank = s.Int(8);
  j.max_retries = s.Int(9);
  j.node = s.Text(10);
  j.submitted_at = s.Int(11);
  j.started_at = s.Int(12);
  j.finished_at = s.Int(13);
  j.progress = json::parse(s.Text(14), nullptr, false);
  if (j.progress.is_discarded()) j.progress = json::object();
  j.exit_code = s.Int(15);
  j.resume_job = s.Int(16);
  j.resume_step = s.Int(17);
  j.user = s.Text(18);
  j.priority = s.Int(19);
  j.held = s.Int(20) != 0;
  j.time_limit_ms = s.Int(21);
  json deps = ParseOr(s.Text(22), json::array());
  for (const auto& d : deps) {
    if (d.is_number_integer()) j.depends_on.push_back(d.get<int64_t>());
  }
  j.allocation = ParseOr(s.Text(23), json::array());
  j.requeues = s.Int(24);
  j.held_by_admin = s.Int(25) != 0;
  j.array_job = s.Int(26);
  j.array_index = s.Int(27);
  if (const std::string array = s.Text(28); !array.empty()) j.array = ParseOr(array, json());
  return j;
}

Result<std::optional<JobRecord>> QueryOneJob(sqlite3* db, StatementCache* cache,
                                             const std::string& where, const std::string& key,
                                             int64_t id) {
  std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE " + where;
  SqliteStatement s(db, sql.c_str(), cache);
  if (key.empty()) {
    s.Bind(1, id);
  } else {
    s.Bind(1, key);
  }
  Status status;
  if (s.Step(&status)) return std::optional<JobRecord>(ReadJob(s));
  if (!status.ok()) return status;
  return std::optional<JobRecord>();
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IoError("cannot open database " + path + ": " + message);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<Store> store(new Store(db));
  // synchronous=FULL: a commit is on disk when Commit() returns, so an acknowledged change survives
  // a power cut, not only a process crash.
  KILN_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                                   "PRAGMA foreign_keys=ON;"));
  KILN_RETURN_IF_ERROR(store->Exec(kSchema));
  KILN_RETURN_IF_ERROR(store->Migrate());
  KILN_RETURN_IF_ERROR(
      store->Exec("CREATE INDEX IF NOT EXISTS jobs_by_array ON jobs(array_job, array_index) "
                  "WHERE array_job > 0"));
  return store;
}

Store::~Store() {
  cache_.reset();  // statements are finalized before the database closes
  sqlite3_close(db_);
}

Status Store::Exec(const std::string& sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error ? error : "unknown error";
    sqlite3_free(error);
    if ((rc & 0xff) == SQLITE_FULL) message += kDiskFullHint;
    return Status::IoError("sqlite: " + message);
  }
  return Status::Ok();
}

Status Store::Begin() {
  if (in_transaction_) return Status::FailedPrecondition("transaction already open");
  KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  in_transaction_ = true;
  return Status::Ok();
}

Status Store::Commit() {
  if (!in_transaction_) return Status::FailedPrecondition("no open transaction");
  Status committed = Exec("COMMIT");
  if (!committed.ok() && sqlite3_get_autocommit(db_) == 0) (void)Exec("ROLLBACK");
  in_transaction_ = false;
  return committed;
}

Status Store::Rollback() {
  if (!in_transaction_) return Status::Ok();
  in_transaction_ = false;
  return Exec("ROLLBACK");
}

bool Store::TransactionLost() const { return in_transaction_ && sqlite3_get_autocommit(db_) != 0; }

Status Store::ProbeWrite() {
  if (in_transaction_) return Status::FailedPrecondition("a transaction is open");
  for (const char* sql :
       {"CREATE TABLE IF NOT EXISTS write_probe (filler BLOB)",
        "INSERT INTO write_probe VALUES (zeroblob(65536))", "DELETE FROM write_probe"}) {
    KILN_RETURN_IF_ERROR(Begin());
    Status done = Exec(sql);
    if (!done.ok()) {
      (void)Rollback();
      return done;
    }
    KILN_RETURN_IF_ERROR(Commit());
  }
  return Status::Ok();
}

Status Store::Savepoint() { return Exec("SAVEPOINT message"); }
Status Store::RollbackToSavepoint() { return Exec("ROLLBACK TO message"); }
Status Store::ReleaseSavepoint() { return Exec("RELEASE message"); }
int64_t Store::TotalChanges() const { return sqlite3_total_changes64(db_); }

Result<int64_t> Store::InsertJob(const JobRecord& j) {
  SqliteStatement s(db_,
                    "INSERT INTO jobs (request_id, name, spec, state, reason, attempt, ranks, "
                    "gpus_per_rank, max_retries, node, submitted_at, started_at, finished_at, "
                    "progress, exit_code, resume_job, resume_step, user, priority, held, "
                    "time_limit_ms, depends_on, allocation, array_job, array_index, array) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    cache_.get());
  s.Bind(1, j.request_id).Bind(2, j.name).Bind(3, j.spec.dump());
  s.Bind(4, std::string(core::JobStateName(j.state))).Bind(5, j.reason).Bind(6, j.attempt);
  s.Bind(7, j.ranks).Bind(8, j.gpus_per_rank).Bind(9, j.max_retries).Bind(10, j.node);
  s.Bind(11, j.submitted_at).Bind(12, j.started_at).Bind(13, j.finished_at);
  s.Bind(14, j.progress.dump()).Bind(15, j.exit_code).Bind(16, j.resume_job);
  s.Bind(17, j.resume_step).Bind(18, j.user).Bind(19, j.priority).Bind(20, int64_t{j.held ? 1 : 0});
  s.Bind(21, j.time_limit_ms).Bind(22, json(j.depends_on).dump()).Bind(23, j.allocation.dump());
  s.Bind(24, j.array_job).Bind(25, j.array_index).Bind(26, j.array.is_null() ? "" : j.array.dump());
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

Status Store::UpdateJob(const JobRecord& j) {
  SqliteStatement s(db_,
                    "UPDATE jobs SET state=?, reason=?, attempt=?, node=?, started_at=?, "
                    "finished_at=?, progress=?, exit_code=?, priority=?, held=?, allocation=?, "
                    "requeues=?, held_by_admin=?, array=? WHERE id=?",
                    cache_.get());
  s.Bind(1, std::string(core::JobStateName(j.state))).Bind(2, j.reason).Bind(3, j.attempt);
  s.Bind(4, j.node).Bind(5, j.started_at).Bind(6, j.finished_at).Bind(7, j.progress.dump());
  s.Bind(8, j.exit_code).Bind(9, j.priority).Bind(10, int64_t{j.held ? 1 : 0});
  s.Bind(11, j.allocation.dump()).Bind(12, j.requeues);
  s.Bind(13, int64_t{j.held_by_admin ? 1 : 0});
  s.Bind(14, j.array.is_null() ? "" : j.array.dump()).Bind(15, j.id);
  KILN_RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db_) != 1) return Status::NotFound("job " + std::to_string(j.id));
  return Status::Ok();
}

Result<bool> Store::MergeJobProgress(int64_t job_id, int64_t attempt,
                                     const nlohmann::json& report) {
  // One json_set per key: each reported value replaces the stored one as it is (objects are not
  // merged, a null stays null: a NaN loss shows). Keys are metric names; others are skipped.
  auto safe_key = [](const std::string& k) {
    return !k.empty() && k.size() <= 64 &&
           std::all_of(k.begin(), k.end(), [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
           });
  };
  std::vector<std::pair<std::string, std::string>> sets;
  std::string sql = "UPDATE jobs SET progress = json_set(progress";
  for (auto it = report.begin(); it != report.end() && sets.size() < 64; ++it) {
    if (!safe_key(it.key())) continue;
    sets.push_back({"$.\"" + it.key() + "\"",
                    it.value().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
    sql += ", ?, json(?)";
  }
  sql += ") WHERE id=? AND attempt=? AND state='RUNNING'";
  SqliteStatement s(db_, sql.c_str(), cache_.get());
  int index = 1;
  for (const auto& [path, value] : sets) {
    s.Bind(index++, path);
    s.Bind(index++, value);
  }
  s.Bind(index, job_id);
  s.Bind(index + 1, attempt);
  KILN_RETURN_IF_ERROR(s.Run());
  return sqlite3_changes(db_) > 0;
}

Result<std::optional<JobRecord>> Store::GetJob(int64_t id) {
  return QueryOneJob(db_, cache_.get(), "id=?", "", id);
}

Result<std::optional<JobRecord>> Store::FindJobByRequestId(const std::string& request_id) {
  return QueryOneJob(db_, cache_.get(), "request_id=?", request_id, 0);
}

Result<std::vector<JobRecord>> Store::ListJobs(bool include_finished) {
  std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs" +
                    (include_finished ? "" : " WHERE state IN ('PENDING','RUNNING')") +
                    " ORDER BY id";
  SqliteStatement s(db_, sql.c_str());
  return s.Rows<JobRecord>(ReadJob);
}

Result<std::vector<JobRecord>> Store::ListJobSummaries(const JobQuery& q) {
  // The spec is the bulk of a row: a listing neither reads nor parses it.
  std::string columns = kJobColumns;
  columns.replace(columns.find("spec,"), 5, "'null',");
  std::string sql = "SELECT " + columns + " FROM jobs WHERE id>?";
  if (!q.states.empty()) {
    sql += " AND state IN (";
    for (size_t i = 0; i < q.states.size(); ++i) sql += i ? ",?" : "?";
    sql += ")";
  } else if (!q.include_finished) {
    sql += " AND state IN ('PENDING','RUNNING')";
  }
  if (!q.user.empty()) sql += " AND user=?";
  sql += " ORDER BY id LIMIT ?";
  SqliteStatement s(db_, sql.c_str());
  int index = 1;
  s.Bind(index++, q.after_id);
  for (const auto& state : q.states) s.Bind(index++, state);
  if (!q.user.empty()) s.Bind(index++, q.user);
  s.Bind(index, q.limit);
  return s.Rows<JobRecord>(ReadJob);
}

Status Store::UpsertNode(const NodeRecord& n) {
  SqliteStatement s(db_,
                    "INSERT INTO nodes (name, slots, memory_bytes, gpus, state, registered_at, "
                    "last_seen_at, labels, drained, drain_reason) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET "
                    "slots=excluded.slots, memory_bytes=excluded.memory_bytes, gpus=excluded.gpus, "
                    "state=excluded.state, registered_at=excluded.registered_at, "
                    "last_seen_at=excluded.last_seen_at, labels=excluded.labels, "
                    "drained=excluded.drained, drain_reason=excluded.drain_reason",
                    cache_.get());
  s.Bind(1, n.name).Bind(2, n.slots).Bind(3, n.memory_bytes).Bind(4, n.gpus).Bind(5, n.state);
  s.Bind(6, n.registered_at).Bind(7, n.last_seen_at).Bind(8, json(n.labels).dump());
  s.Bind(9, int64_t{n.drained ? 1 : 0}).Bind(10, n.drain_reason);
  return s.Run();
}

Result<bool> Store::RemoveNode(const std::string& name) {
  SqliteStatement s(db_, "DELETE FROM nodes WHERE name=?");
  s.Bind(1, name);
  KILN_RETURN_IF_ERROR(s.Run());
  return sqlite3_changes(db_) > 0;
}

Result<std::vector<NodeRecord>> Store::ListNodes() {
  SqliteStatement s(db_,
                    "SELECT name, slots, memory_bytes, gpus, state, registered_at, last_seen_at, "
                    "labels, drained, drain_reason FROM nodes ORDER BY name");
  return s.Rows<NodeRecord>([](const SqliteStatement& row) {
    NodeRecord n{row.Text(0), row.Int(1), row.Int(2), row.Int(3), row.Text(4), row.Int(5),
                 row.Int(6), {}, false, ""};
    for (const auto& l : ParseOr(row.Text(7), json::array())) {
      if (l.is_string()) n.labels.push_back(l.get<std::string>());
    }
    n.drained = row.Int(8) != 0;
    n.drain_reason = row.Text(9);
    return n;
  });
}

Status Store::SaveUsage(const UsageRecord& u) {
  SqliteStatement s(db_,
                    "INSERT INTO usage (user, usage, as_of) VALUES (?,?,?) ON CONFLICT(user) DO "
                    "UPDATE SET usage=excluded.usage, as_of=excluded.as_of",
                    cache_.get());
  s.Bind(1, u.user).Bind(2, u.usage).Bind(3, u.as_of);
  return s.Run();
}

Result<std::vector<UsageRecord>> Store::ListUsage() {
  SqliteStatement s(db_, "SELECT user, usage, as_of FROM usage ORDER BY user");
  return s.Rows<UsageRecord>([](const SqliteStatement& row) {
    return UsageRecord{row.Text(0), row.Double(1), row.Int(2)};
  });
}

}  // namespace kiln::service
