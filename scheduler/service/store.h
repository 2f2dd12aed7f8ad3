// Durable scheduler state in one SQLite file (WAL mode): jobs, job events, nodes, checkpoints, logs.
// Used by the scheduler's event-loop thread only. Writes between Begin() and Commit() are one
// transaction: the loop groups a turn's changes and commits them before sending any reply.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "scheduler/core/job_state.h"
#include "scheduler/service/sqlite_statement.h"

struct sqlite3;

namespace kiln::service {

struct JobRecord {
  int64_t id = 0;
  std::string request_id;
  std::string name;
  nlohmann::json spec;
  core::JobState state = core::JobState::kPending;
  std::string reason;
  int64_t attempt = 0;  // attempts started so far
  int64_t ranks = 1;
  int64_t gpus_per_rank = 0;
  int64_t max_retries = 0;
  std::string node;     // node of the current/last attempt
  Millis submitted_at = 0;
  Millis started_at = 0;
  Millis finished_at = 0;
  nlohmann::json progress = nlohmann::json::object();  // latest rank-0 report
  int64_t exit_code = 0;
  int64_t resume_job = 0;    // submitted to continue from a checkpoint of this job (0: none)
  int64_t resume_step = -1;  // ... at this step (-1: its latest)
  std::string user;
  int64_t priority = 0;
  bool held = false;
  Millis time_limit_ms = 0;          // 0: none
  std::vector<int64_t> depends_on;
  // Where the current/last attempt runs: [{"node", "ranks", "gpu_ids"}].
  nlohmann::json allocation = nlohmann::json::array();
  int64_t requeues = 0;  // attempts an admin requeued (they use up no retry)
  bool held_by_admin = false;  // held by an admin: its owner may not release it
  // A task of an array (kiln submit --array): the array's job id and the task's index.
  int64_t array_job = 0;
  int64_t array_index = -1;
  // An array's own row: {"indices", "max_running", "pending", "cancelled"} (ArrayState); null
  // for every other job. Pending tasks have no row of their own until they start (or are acted
  // on one by one), so a 10,000-task array is one row here.
  nlohmann::json array;
};

struct JobEventRecord {
  int64_t job_id = 0;
  Millis time = 0;
  std::string from_state;
  std::string to_state;
  std::string reason;
};

struct NodeRecord {
  std::string name;
  int64_t slots = 0;
  int64_t memory_bytes = 0;
  int64_t gpus = 0;
  std::string state;  // UP | DOWN
  Millis registered_at = 0;
  Millis last_seen_at = 0;
  std::vector<std::string> labels;
  bool drained = false;  // by an admin: takes no new work until resumed
  std::string drain_reason;
};

// One attempt of a job: where it ran, when, and how it ended.
struct AttemptRecord {
  int64_t job_id = 0;
  int64_t attempt = 0;
  nlohmann::json nodes = nlohmann::json::array();  // the allocation: [{"node", "ranks", "gpu_ids"}]
  Millis started_at = 0;
  Millis ended_at = 0;           // 0 while it runs
  std::string outcome;           // RUNNING, COMPLETED, FAILED, CANCELLED
  int64_t exit_code = -1;        // mpirun's, once the worker reported it; -1 before or never
  std::string reason;
  int64_t resumed_from_step = -1;  // the checkpoint it started from
};

struct UsageRecord {  // a user's decayed fair-share usage
  std::string user;
  double usage = 0;
  Millis as_of = 0;
};

struct CheckpointRecord {
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t step = 0;
  int64_t epoch = 0;
  nlohmann::json metrics = nlohmann::json::object();
  int64_t bytes = 0;
  std::string sha256;
  Millis created_at = 0;
  std::string path;  // shared_fs checkpoints: where the file is; empty for scheduler blobs
};

// Which of a job's log lines to read (Store::Logs).
struct LogQuery {
  int64_t after_seq = 0;
  int64_t limit = 1000;
  int64_t attempt = 0;   // 0: every attempt
  Millis since = 0;      // 0: from the start
  int64_t rank = -1;     // -1: every line; else lines that start with "[rank R]"
};

// Which jobs to list (Store::ListJobSummaries).
struct JobQuery {
  bool include_finished = false;
  int64_t after_id = 0;
  int64_t limit = 1000;
  std::string user;                 // "": everyone's
  std::vector<std::string> states;  // empty: any (unfinished only unless include_finished)
};

// One kept point of a job's metrics history (scheduler/core/metric_history.h).
struct MetricPoint {
  std::string series;  // "step" or "epoch"
  int64_t ordinal = 0;
  int64_t attempt = 0;
  Millis time = 0;
  nlohmann::json point;  // the report's numeric fields
};

struct LogLine {
  int64_t seq = 0;
  int64_t attempt = 0;
  Millis time = 0;
  std::string line;
};

// A user the admin created. The token itself is never stored, only its SHA-256.
// What an admin allows a user at once (0: no limit). See docs/operations.md.
struct UserQuota {
  int64_t max_pending = 0;           // PENDING jobs: a submit past it is refused
  int64_t max_running_ranks = 0;     // ranks of RUNNING jobs: more wait (Quota)
  int64_t max_gpus = 0;              // GPUs of RUNNING jobs: more wait (Quota)
  int64_t max_checkpoint_bytes = 0;  // checkpoints stored: an upload past it is refused
  bool operator==(const UserQuota& o) const {
    return max_pending == o.max_pending && max_running_ranks == o.max_running_ranks &&
           max_gpus == o.max_gpus && max_checkpoint_bytes == o.max_checkpoint_bytes;
  }
};

// The Unix account a user's jobs run as on the nodes (resolved there with getpwnam).
struct UserAccount {
  std::string unix_user;    // empty: the account of the user's own name
  bool allow_root = false;  // the account may be uid 0 (an admin's explicit opt-in)
  bool operator==(const UserAccount& o) const {
    return unix_user == o.unix_user && allow_root == o.allow_root;
  }
};

struct UserRecord {
  std::string name;
  bool admin = false;
  std::string token_sha256;
  Millis created_at = 0;
  UserQuota quota;      // written by SetUserQuota only
  UserAccount account;  // written by UpsertUser when the user is created, then SetUserAccount
  // The Unix account the user's jobs run as.
  const std::string& unix_user() const {
    return account.unix_user.empty() ? name : account.unix_user;
  }
};

struct WorkerKeyRecord {  // a worker's CURVE public key on the allow-list
  std::string public_key;
  std::string name;  // the admin's note of which node holds it
  Millis added_at = 0;
};

// Who did what: every change a client asks for, and every refusal of an identified user.
struct AuditRecord {
  int64_t id = 0;
  Millis time = 0;
  std::string user;     // "-" when the caller could not be identified
  std::string action;   // submit, cancel, hold, release, priority, node.drain, ckpt.pull, ...
  std::string target;   // "job 12", "node n1", "user alice"
  std::string outcome;  // "ok" or the status code name of the refusal
  std::string detail;
};

// What one attempt holds on one node, from its placement until its exit is reported there or
// the node is declared DOWN. `state` is owned and encoded by PlacementTable.
struct PlacementRow {
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::string node;
  nlohmann::json state = nlohmann::json::object();
};

class Store {
 public:
  // Opens (creating if needed) the database at `path` and its schema.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Status Begin();
  Status Commit();
  Status Rollback();
  // Outside any transaction: whether a transaction that grows the database commits now (a full
  // disk refuses it). Adds a 64 KiB row to a table of its own, commits, and removes it again.
  Status ProbeWrite();
  bool InTransaction() const { return in_transaction_; }
  // SQLite rolled the open transaction back by itself (a full disk while spilling pages): every
  // later write would commit on its own. The caller must undo its turn.
  bool TransactionLost() const;
  // A savepoint inside the open transaction: one per message, so that a handler that fails
  // leaves none of its writes. RollbackToSavepoint keeps the savepoint open; Release ends it.
  Status Savepoint();
  Status RollbackToSavepoint();
  Status ReleaseSavepoint();
  // Rows inserted, updated or deleted by this connection since it opened.
  int64_t TotalChanges() const;

  Result<int64_t> InsertJob(const JobRecord& job);  // returns the new id; job.id is ignored
  Status UpdateJob(const JobRecord& job);
  // Sets each of `report`'s top-level keys (metric names: letters, digits, _ and -) in the
  // progress of the job's RUNNING `attempt`, in one UPDATE done by SQLite's json_set: the row is
  // not read and its spec not parsed here. False when the job is not running that attempt.
  Result<bool> MergeJobProgress(int64_t job_id, int64_t attempt, const nlohmann::json& report);
  Result<std::optional<JobRecord>> GetJob(int64_t id);
  Result<std::optional<JobRecord>> FindJobByRequestId(const std::string& request_id);
  // Jobs in id order; unfinished only unless include_finished.
  Result<std::vector<JobRecord>> ListJobs(bool include_finished);
  // A page of jobs in id order, without their specs (JobRecord::spec is null): for listings.
  Result<std::vector<JobRecord>> ListJobSummaries(const JobQuery& query);

  Status AddEvent(const JobEventRecord& event);

  // Arrays (store_arrays.cpp): the id of the row of task `index` of array `array_job`, if it has
  // one; how many of its task rows are in each state.
  Result<std::optional<int64_t>> FindArrayTask(int64_t array_job, int64_t index);
  Result<std::map<std::string, int64_t>> ArrayTaskStates(int64_t array_job);

  Status AddAttempt(const AttemptRecord& attempt);
  Status EndAttempt(int64_t job_id, int64_t attempt, Millis ended_at, const std::string& outcome,
                    const std::string& reason);
  // Records mpirun's exit code for an attempt that has none yet (it may arrive after the
  // attempt was ended by cancel or a time limit).
  // Once: the first report wins. A non-empty `note` is added to the attempt's reason.
  Status SetAttemptExitCode(int64_t job_id, int64_t attempt, int64_t exit_code,
                            const std::string& note = "");
  Result<std::vector<AttemptRecord>> Attempts(int64_t job_id);
  Result<std::vector<JobEventRecord>> Events(int64_t job_id);

  Status UpsertNode(const NodeRecord& node);
  Result<std::vector<NodeRecord>> ListNodes();
  Result<bool> RemoveNode(const std::string& name);  // false when there was none

  Status SaveUsage(const UsageRecord& usage);
  Result<std::vector<UsageRecord>> ListUsage();

  Status AddCheckpoint(const CheckpointRecord& checkpoint);
  Result<std::vector<CheckpointRecord>> Checkpoints(int64_t job_id);  // by step, ascending
  // The checkpoint at `step`, or the latest when step < 0.
  Result<std::optional<CheckpointRecord>> FindCheckpoint(int64_t job_id, int64_t step);
  Status DeleteCheckpoint(int64_t job_id, int64_t step);
  // Bytes of checkpoints stored: in the scheduler's blob store (each blob once, however many
  // jobs share it) and in shared_fs folders.
  struct StoredCheckpointBytes {
    int64_t scheduler = 0;
    int64_t shared_fs = 0;
  };
  Result<StoredCheckpointBytes> CheckpointBytesStored();
  // How many checkpoint rows (of any job) refer to this blob.
  Result<int64_t> CountCheckpointsWithSha(const std::string& sha256);

  // Users, worker keys and the audit table (store_security.cpp).
  Status UpsertUser(const UserRecord& user);  // a new token for an existing name replaces the old
  Result<std::optional<UserRecord>> FindUserByTokenDigest(const std::string& token_sha256);
  Result<std::vector<UserRecord>> ListUsers();

  // Services (store_services.cpp): one JSON record per name (service_table.h).
  Status PutService(const std::string& name, const nlohmann::json& record);
  Status DeleteService(const std::string& name);
  Result<std::vector<nlohmann::json>> ListServices();
  Result<bool> RemoveUser(const std::string& name);  // false when there was none
  Result<bool> SetUserQuota(const std::string& name, const UserQuota& quota);  // false: no user
  Result<bool> SetUserAccount(const std::string& name,
                              const UserAccount& account);  // false: no user
  // Bytes of the checkpoints stored for the user's jobs (blobs shared by jobs count per job).
  Result<int64_t> CheckpointBytesOfUser(const std::string& user);
  Status AllowWorkerKey(const WorkerKeyRecord& key);
  // Removes the key given, or every key noted with that node name, and remembers each as revoked
  // (so a worker still holding one is told so); returns how many.
  Result<int64_t> RevokeWorkerKey(const std::string& key_or_name, Millis now);
  // Revoked keys ({public_key, node name, revoked_at}); AllowWorkerKey's caller forgets one
  // admitted again.
  Result<std::vector<WorkerKeyRecord>> ListRevokedWorkerKeys();
  Status ForgetRevokedWorkerKey(const std::string& public_key);
  Result<std::vector<WorkerKeyRecord>> ListWorkerKeys();
  Status AddAudit(const AuditRecord& record);
  // Changes whenever another connection (an admin command) committed since the last call; what
  // this connection commits does not change it. Lets the daemon cache users and worker keys.
  Result<int64_t> ExternalChangeCounter();
  Result<std::vector<AuditRecord>> ListAudit(int64_t limit);  // the newest `limit`, oldest first

  // Retention (store_retention.cpp). Each deletes at most `limit` rows and returns how many: the
  // logs or events (with the metrics history) of jobs that finished in [finished_from,
  // finished_before), audit rows older than `before`.
  Result<int64_t> PruneJobLogs(Millis finished_from, Millis finished_before, int64_t limit);
  Result<int64_t> PruneJobEvents(Millis finished_from, Millis finished_before, int64_t limit);
  Result<int64_t> PruneAudit(Millis before, int64_t limit);

  // Metrics history (store_metric_history.cpp).
  Status AddMetricPoint(int64_t job_id, const MetricPoint& point);
  // Deletes the series' points whose ordinal `stride` does not divide; returns how many remain.
  Result<int64_t> ThinMetricHistory(int64_t job_id, const std::string& series, int64_t stride);
  Result<std::vector<int64_t>> MetricOrdinals(int64_t job_id, const std::string& series);
  Result<std::vector<MetricPoint>> MetricHistory(int64_t job_id);  // by series, then ordinal

  // Placements (store_placements.cpp): inserted or replaced whole, deleted when they end.
  Status SavePlacement(const PlacementRow& row);
  Status DeletePlacement(int64_t job_id, int64_t attempt, const std::string& node);
  Status DeletePlacementsOn(const std::string& node);
  Result<std::vector<PlacementRow>> ListPlacements();

  // Appends lines with consecutive seq numbers after the job's last one.
  Status AppendLogs(int64_t job_id, int64_t attempt, Millis time,
                    const std::vector<std::string>& lines);
  Result<std::vector<LogLine>> Logs(int64_t job_id, const LogQuery& query);
  // How many numbered lines of an attempt's output from `node` are stored (the next number
  // expected); SetLogCursor records more.
  Result<int64_t> LogCursor(int64_t job_id, int64_t attempt, const std::string& node);
  Status SetLogCursor(int64_t job_id, int64_t attempt, const std::string& node, int64_t next_line);
  // The seq just before the `n`-th last line that matches `query` (after_seq and limit
  // ignored), so that Logs from there returns the last n; 0 when fewer match; for n = 0, the
  // job's last seq.
  Result<int64_t> SeqBeforeLast(int64_t job_id, const LogQuery& query, int64_t n);

 private:
  explicit Store(sqlite3* db) : db_(db), cache_(std::make_unique<StatementCache>()) {}
  Status Exec(const std::string& sql);
  // Adds columns that databases made by earlier versions lack.
  Status Migrate();
  sqlite3* db_;
  std::unique_ptr<StatementCache> cache_;
  bool in_transaction_ = false;
};

}  // namespace kiln::service
