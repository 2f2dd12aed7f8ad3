// Every message kiln processes exchange, as plain structs. Each declares its wire type name
// (kType) and its fields once (Fields), which gives it its JSON codec (see codec.h).
//
// Who sends what:
//   CLI -> scheduler      submit, queue, show, cancel, logs, nodes, ckpt_ls, ckpt_read, ckpt_rm,
//                         job_admin, node_admin, whoami (each with the user's token in envelope.auth)
//   scheduler -> CLI      submit_reply, cancel_reply, data (read views), error
//   worker -> scheduler   register, heartbeat, job_started, log, progress, checkpoint(+bytes),
//                         job_exited
//   scheduler -> worker   register_ack, heartbeat, reregister, launch(+checkpoint bytes), kill,
//                         exit_ack
//   kiln-train -> worker  train_progress, train_checkpoint (over the run dir's ipc:// socket)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::protocol {

using nlohmann::json;

// ---- CLI <-> scheduler ---------------------------------------------------------------------

struct SubmitRequest {
  static constexpr const char* kType = "submit";
  std::string request_id;  // client-made; a retried submit with the same id returns the same job
  json spec;
  // Start from a checkpoint of another job (its latest when the step is absent).
  std::optional<int64_t> resume_from_job;
  std::optional<int64_t> resume_from_step;
  std::string user;   // who submits (the CLI's login name; authenticated once users land)
  bool hold = false;  // queue it held: it waits until released
  template <class V> void Fields(V& v) {
    v("request_id", request_id); v("spec", spec); v("resume_from_job", resume_from_job);
    v("resume_from_step", resume_from_step); v("user", user); v("hold", hold);
  }
};

struct SubmitReply {
  static constexpr const char* kType = "submit_reply";
  int64_t job_id = 0;
  bool duplicate = false;  // true when request_id had been seen: the existing job is returned
  // Set when no node that is up now could ever hold the job (it is queued all the same: nodes
  // come and go), e.g. "Infeasible: needs 4 ranks ...", or when no node is up at all.
  std::optional<std::string> warning;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("duplicate", duplicate); v("warning", warning);
  }
};

// Without `limit`: every matching job as one array (older clients). With it: one page,
// {"jobs": [...], "next_after_id": id or null}, of at most `limit` jobs and about 1 MiB; ask again
// with after_id = next_after_id until it is null.
struct QueueRequest {
  static constexpr const char* kType = "queue";
  bool all = false;  // include finished jobs
  std::optional<int64_t> limit;
  std::optional<int64_t> after_id;             // jobs with a larger id
  std::optional<std::string> user;             // only this user's jobs
  std::optional<std::vector<std::string>> states;  // only jobs in these states
  template <class V> void Fields(V& v) {
    v("all", all); v("limit", limit); v("after_id", after_id); v("user", user);
    v("states", states);
  }
};

struct ShowRequest {
  static constexpr const char* kType = "show";
  int64_t job_id = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); }
};

struct CancelRequest {
  static constexpr const char* kType = "cancel";
  int64_t job_id = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); }
};

struct CancelReply {
  static constexpr const char* kType = "cancel_reply";
  int64_t job_id = 0;
  std::string state;  // the job's state after the request
  template <class V> void Fields(V& v) { v("job_id", job_id); v("state", state); }
};

// A page of a job's output: lines with seq > after_seq that pass the filters, at most `limit` and
// about 1 MiB; the reply's "more" says whether to ask again from its last line's seq. `tail`: the
// page starts at the tail-th last matching line instead.
struct LogsRequest {
  static constexpr const char* kType = "logs";
  int64_t job_id = 0;
  int64_t after_seq = 0;  // return lines with seq > after_seq
  int64_t limit = 1000;
  std::optional<int64_t> attempt;   // only this attempt's lines
  std::optional<int64_t> since_ms;  // only lines stored at or after this wall time
  std::optional<int64_t> rank;      // only lines a rank prefixed "[rank R]"
  std::optional<int64_t> tail;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("after_seq", after_seq); v("limit", limit); v("attempt", attempt);
    v("since_ms", since_ms); v("rank", rank); v("tail", tail);
  }
};

// Admin changes to a job: "hold" (PENDING jobs wait until released), "release", "priority".
struct JobAdminRequest {
  static constexpr const char* kType = "job_admin";
  int64_t job_id = 0;
  std::string action;
  int64_t priority = 0;  // for "priority"
  template <class V> void Fields(V& v) { v("job_id", job_id); v("action", action); v("priority", priority); }
};

// Admin changes to a node: "drain" (no new work; running jobs finish), "drain_requeue" (and
// the jobs running there stop now, checkpoint, and wait to resume elsewhere) or "resume".
struct NodeAdminRequest {
  static constexpr const char* kType = "node_admin";
  std::string node;
  std::string action;
  std::string reason;
  template <class V> void Fields(V& v) { v("node", node); v("action", action); v("reason", reason); }
};

// Who the request's token belongs to; answered with data {"user", "admin"}.
struct WhoAmIRequest {
  static constexpr const char* kType = "whoami";
  template <class V> void Fields(V&) {}
};

struct NodesRequest {
  static constexpr const char* kType = "nodes";
  template <class V> void Fields(V&) {}
};

struct CheckpointsRequest {
  static constexpr const char* kType = "ckpt_ls";
  int64_t job_id = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); }
};

// Reply to the read requests (queue, show, logs, nodes, ckpt_ls): a JSON view.
struct DataReply {
  static constexpr const char* kType = "data";
  json data;
  template <class V> void Fields(V& v) { v("data", data); }
};

struct ErrorReply {
  static constexpr const char* kType = "error";
  std::string code;                 // StatusCodeName
  std::string message;
  std::vector<std::string> errors;  // one per field, for validation failures
  template <class V> void Fields(V& v) { v("code", code); v("message", message); v("errors", errors); }
};

// ---- kiln-rsh -> worker agent (its launch socket) -------------------------------------------

// Run `command` (an MPI daemon's command line, as mpirun gives it to its rsh agent) through
// /bin/sh on this node, for an attempt of a gang whose leader is elsewhere.
struct RemoteExec {
  static constexpr const char* kType = "remote_exec";
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::string secret;
  std::string command;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("secret", secret); v("command", command);
  }
};

// The command ended (MPI daemons detach, so this comes soon); `output` is its last lines.
struct RemoteExit {
  static constexpr const char* kType = "remote_exit";
  int64_t exit_code = 0;
  std::vector<std::string> output;
  template <class V> void Fields(V& v) { v("exit_code", exit_code); v("output", output); }
};

// ---- worker <-> scheduler ------------------------------------------------------------------

struct RunningAttempt {
  int64_t job_id = 0;
  int64_t attempt = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); }
  bool operator==(const RunningAttempt& o) const { return job_id == o.job_id && attempt == o.attempt; }
};

struct AccountUid {
  std::string account;
  int64_t uid = -1;  // -1: the node has no such account
  template <class V> void Fields(V& v) { v("account", account); v("uid", uid); }
  bool operator==(const AccountUid& o) const { return account == o.account && uid == o.uid; }
};

struct RegisterWorker {
  static constexpr const char* kType = "register";
  std::string name;
  int64_t slots = 0;
  int64_t memory_bytes = 0;
  int64_t gpus = 0;
  std::vector<RunningAttempt> running;  // attempts this agent is still supervising
  std::vector<std::string> labels;      // matched against jobs' resources.labels
  // Where other nodes reach this one: the address mpirun's hostfile names it by, and the
  // endpoint of its launch socket (kiln-rsh asks it there to start MPI daemons).
  std::string address;
  std::string launch_endpoint;
  // Whom the agent runs as: a root agent starts jobs as any account the node has, any other
  // agent only as its own (scheduler/core/accounts.h). Absent from agents older than this field.
  std::optional<int64_t> agent_uid;
  std::optional<std::string> agent_account;
  // The accounts this agent was asked about before (AccountReport), so that a restarted
  // scheduler can place jobs at once.
  std::optional<std::vector<AccountUid>> accounts;
  template <class V> void Fields(V& v) {
    v("name", name); v("slots", slots); v("memory_bytes", memory_bytes); v("gpus", gpus);
    v("running", running); v("labels", labels); v("address", address);
    v("launch_endpoint", launch_endpoint); v("agent_uid", agent_uid);
    v("agent_account", agent_account); v("accounts", accounts);
  }
};

// `lease_ms`: how long the worker may run its attempts without hearing from the scheduler; it
// stops them itself before then (self-fencing), and only after it does the scheduler fail them.
struct RegisterAck {
  static constexpr const char* kType = "register_ack";
  std::string name;
  int64_t heartbeat_interval_ms = 0;
  std::optional<int64_t> lease_ms;
  // The Unix accounts users' jobs run as: the worker looks each up and answers with `accounts`.
  std::optional<std::vector<std::string>> accounts;
  template <class V> void Fields(V& v) {
    v("name", name); v("heartbeat_interval_ms", heartbeat_interval_ms); v("lease_ms", lease_ms);
    v("accounts", accounts);
  }
};

// Scheduler -> worker: accounts that users were mapped to since the worker registered.
struct CheckAccounts {
  static constexpr const char* kType = "check_accounts";
  std::vector<std::string> accounts;
  template <class V> void Fields(V& v) { v("accounts", accounts); }
};

// Worker -> scheduler: what getpwnam said of accounts it was asked about (after register_ack and
// check_accounts), or of one whose answer changed since (an account added or removed there).
struct AccountReport {
  static constexpr const char* kType = "accounts";
  std::string name;  // the node
  std::vector<AccountUid> accounts;
  template <class V> void Fields(V& v) { v("name", name); v("accounts", accounts); }
};

// Sent both ways. From a worker it carries the attempts it runs; from the scheduler `running` is empty.
struct Heartbeat {
  static constexpr const char* kType = "heartbeat";
  std::string name;
  std::vector<RunningAttempt> running;
  template <class V> void Fields(V& v) { v("name", name); v("running", running); }
};

// The scheduler does not know this worker (it restarted, or declared the worker DOWN).
struct Reregister {
  static constexpr const char* kType = "reregister";
  std::string reason;
  template <class V> void Fields(V& v) { v("reason", reason); }
};

// Start an attempt. When resume_step >= 0 the attempt resumes from checkpoint `resume_step` of job
// `resume_job` (this job, or the one it was submitted to continue), which the worker fetches with
// ckpt_read (or opens at resume_path on a shared file system) before starting the ranks.
// A node of a gang that spans several nodes, in rank order (the leader, which runs mpirun and
// rank 0, first).
struct LaunchHost {
  std::string node;
  std::string address;
  int64_t ranks = 0;
  std::string launch_endpoint;
  std::string public_key;  // the node agent's CURVE key: kiln-rsh pins it
  template <class V> void Fields(V& v) {
    v("node", node); v("address", address); v("ranks", ranks);
    v("launch_endpoint", launch_endpoint); v("public_key", public_key);
  }
};

struct LaunchJob {
  static constexpr const char* kType = "launch";
  int64_t job_id = 0;
  int64_t attempt = 0;
  json spec;
  int64_t ranks = 0;
  int64_t resume_step = -1;
  int64_t resume_job = 0;
  std::string resume_sha256;
  std::string resume_path;  // set for shared_fs checkpoints
  // GPUs of this node given to the attempt: gpus_per_rank ids per local rank, in rank order.
  std::vector<int64_t> gpu_ids;
  // A gang on several nodes: every node of it (empty for a single-node attempt), and a secret
  // that the leader's kiln-rsh shows the other nodes' agents to have them start its daemons.
  std::vector<LaunchHost> hosts;
  std::string launch_secret;
  // The Unix account the attempt's processes run as, and whether it may be uid 0. Absent (a
  // scheduler older than this field): an agent that is not root runs the job as its own account,
  // a root agent refuses it.
  std::optional<std::string> run_as;
  std::optional<bool> allow_root;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("spec", spec); v("ranks", ranks);
    v("resume_step", resume_step); v("resume_job", resume_job); v("resume_sha256", resume_sha256);
    v("resume_path", resume_path); v("gpu_ids", gpu_ids); v("hosts", hosts);
    v("launch_secret", launch_secret); v("run_as", run_as); v("allow_root", allow_root);
  }
};

struct KillJob {
  static constexpr const char* kType = "kill";
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::string reason;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); v("reason", reason); }
};

struct JobStarted {
  static constexpr const char* kType = "job_started";
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t pid = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); v("pid", pid); }
};

// Lines of an attempt's output on one node. Numbered (first_line present): the lines of the
// attempt on that node are numbered from 0, the scheduler stores each number once and answers
// log_ack; the worker resends what is not acknowledged (worker/agent/log_shipper.h).
// `oldest_line`: the oldest line the worker still holds (those before it it had to drop).
struct LogBatch {
  static constexpr const char* kType = "log";
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::vector<std::string> lines;
  std::optional<int64_t> first_line;
  std::optional<int64_t> oldest_line;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("lines", lines); v("first_line", first_line);
    v("oldest_line", oldest_line);
  }
};

// Scheduler -> worker: every line of that attempt's output from this node before `next_line` is
// stored. `rewind`: a batch came after a gap (lines lost on the way): send again from next_line.
struct LogAck {
  static constexpr const char* kType = "log_ack";
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t next_line = 0;
  bool rewind = false;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("next_line", next_line); v("rewind", rewind);
  }
};

// Rank 0's progress: {"step", "epoch", "total_steps", "loss", "samples_per_s", "test_accuracy", ...}
struct ProgressReport {
  static constexpr const char* kType = "progress";
  int64_t job_id = 0;
  int64_t attempt = 0;
  json report;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); v("report", report); }
};

// ---- checkpoint transfer --------------------------------------------------------------------
// Upload (worker -> scheduler), resumable and verified:
//   1. worker: ckpt_begin{job, attempt, step, ..., bytes, sha256}
//   2. scheduler: ckpt_offset{sha256, offset} -- how much of the blob it already holds (a resumed
//      upload starts there); or ckpt_done at once if the blob is already stored
//   3. worker: ckpt_chunk{sha256, offset} + bytes frame, at most kUploadWindow chunks unacknowledged;
//      scheduler answers each with ckpt_offset (its new size; `resync` when a chunk did not start
//      there, and the worker rewinds to that offset)
//   4. after the last byte the scheduler verifies the sha256 and answers ckpt_done{ok, reason};
//      a corrupt upload is discarded and the worker starts it again.
// After a reconnect the worker sends ckpt_begin again and continues from the answered offset.
struct CheckpointBegin {
  static constexpr const char* kType = "ckpt_begin";
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t step = 0;
  int64_t epoch = 0;
  json metrics;
  int64_t bytes = 0;
  std::string sha256;
  // shared_fs storage: the file's path on the shared file system; nothing is uploaded, the
  // scheduler records the path and answers ckpt_done.
  std::optional<std::string> path;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("step", step); v("epoch", epoch);
    v("metrics", metrics); v("bytes", bytes); v("sha256", sha256); v("path", path);
  }
};

struct CheckpointOffset {
  static constexpr const char* kType = "ckpt_offset";
  std::string sha256;
  int64_t offset = 0;
  bool resync = false;
  template <class V> void Fields(V& v) { v("sha256", sha256); v("offset", offset); v("resync", resync); }
};

struct CheckpointChunk {
  static constexpr const char* kType = "ckpt_chunk";
  std::string sha256;
  int64_t offset = 0;
  template <class V> void Fields(V& v) { v("sha256", sha256); v("offset", offset); }
};

struct CheckpointDone {
  static constexpr const char* kType = "ckpt_done";
  std::string sha256;
  bool ok = false;
  std::string reason;
  template <class V> void Fields(V& v) { v("sha256", sha256); v("ok", ok); v("reason", reason); }
};

// Download (CLI pull, worker resume): read `length` bytes at `offset` of a job's checkpoint at
// `step` (-1: the latest). Answered by ckpt_data + the bytes frame, or error.
struct CheckpointRead {
  static constexpr const char* kType = "ckpt_read";
  int64_t job_id = 0;
  int64_t step = -1;
  int64_t offset = 0;
  int64_t length = 0;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("step", step); v("offset", offset); v("length", length);
  }
};

// CLI -> scheduler: delete a job's checkpoint (refused for one an attempt resumes from).
struct CheckpointRemove {
  static constexpr const char* kType = "ckpt_rm";
  int64_t job_id = 0;
  int64_t step = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("step", step); }
};

struct CheckpointData {
  static constexpr const char* kType = "ckpt_data";
  int64_t job_id = 0;
  int64_t step = 0;
  std::string sha256;
  int64_t bytes = 0;   // size of the whole checkpoint
  int64_t offset = 0;  // of this frame's bytes
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("step", step); v("sha256", sha256); v("bytes", bytes); v("offset", offset);
  }
};

// The attempt's process group ended. exit_code is the status of mpirun (-1 if killed by signal).
// The worker repeats it until the scheduler acknowledges with exit_ack.
struct JobExited {
  static constexpr const char* kType = "job_exited";
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t exit_code = 0;
  int64_t signal = 0;
  std::string reason;
  // The first error line of the lowest rank that failed here (common/rank_failure.h), and whether
  // a retry cannot cure it.
  std::optional<std::string> rank_error;
  std::optional<bool> permanent;
  // The worker stopped the attempt because it is shutting down, not because the job failed: put
  // the job back (its checkpoint is uploaded before this report) without using a retry.
  std::optional<bool> requeue;
  // The worker did not start the attempt: it cannot run it as the job's account (the reason says
  // why). The job goes back to the queue without using a retry; the node stays in service.
  std::optional<bool> account_refused;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("exit_code", exit_code); v("signal", signal);
    v("reason", reason); v("rank_error", rank_error); v("permanent", permanent);
    v("requeue", requeue); v("account_refused", account_refused);
  }
};

struct ExitAck {
  static constexpr const char* kType = "exit_ack";
  int64_t job_id = 0;
  int64_t attempt = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); }
};

// ---- kiln-train -> worker ------------------------------------------------------------------

struct TrainProgress {
  static constexpr const char* kType = "train_progress";
  json report;
  template <class V> void Fields(V& v) { v("report", report); }
};

struct TrainCheckpoint {
  static constexpr const char* kType = "train_checkpoint";
  int64_t step = 0;
  int64_t epoch = 0;
  json metrics;
  std::string path;  // absolute path of the checkpoint file in the run dir
  int64_t bytes = 0;
  std::string sha256;
  template <class V> void Fields(V& v) {
    v("step", step); v("epoch", epoch); v("metrics", metrics); v("path", path); v("bytes", bytes);
    v("sha256", sha256);
  }
};

// Every message type, for the codec's known-type check and the round-trip tests.
#define KILN_FOR_EACH_MESSAGE(X)                                                              \
  X(SubmitRequest) X(SubmitReply) X(QueueRequest) X(ShowRequest) X(CancelRequest)             \
  X(CancelReply) X(LogsRequest) X(NodesRequest) X(CheckpointsRequest) X(DataReply)            \
  X(ErrorReply) X(RegisterWorker) X(RegisterAck) X(Heartbeat) X(Reregister) X(LaunchJob)      \
  X(KillJob) X(JobStarted) X(LogBatch) X(ProgressReport) X(JobExited)     \
  X(ExitAck) X(LogAck) X(TrainProgress) X(TrainCheckpoint) X(CheckpointBegin) X(CheckpointOffset)        \
  X(CheckpointChunk) X(CheckpointDone) X(CheckpointRead) X(CheckpointData) X(CheckpointRemove) \
  X(JobAdminRequest) X(NodeAdminRequest) X(WhoAmIRequest) X(RemoteExec) X(RemoteExit)       \
  X(CheckAccounts) X(AccountReport)

}  // namespace kiln::protocol
