// The messages between worker agents and the scheduler (registration, liveness, accounts,
// launches, output, exits). Checkpoint transfer, which workers and CLIs share, is in messages.h,
// which includes this file; include messages.h (or codec.h), not this one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::protocol {

using nlohmann::json;

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
  // A service's replica (spec.serve): the SHA-256 of each token that may call it.
  std::optional<std::vector<std::string>> serve_tokens;
  // A task of an array: the array's job id and the task's index (KILN_ARRAY_JOB_ID and
  // KILN_ARRAY_INDEX in the ranks' environment).
  std::optional<int64_t> array_job;
  std::optional<int64_t> array_index;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("attempt", attempt); v("spec", spec); v("ranks", ranks);
    v("resume_step", resume_step); v("resume_job", resume_job); v("resume_sha256", resume_sha256);
    v("resume_path", resume_path); v("gpu_ids", gpu_ids); v("hosts", hosts);
    v("launch_secret", launch_secret); v("run_as", run_as); v("allow_root", allow_root);
    v("serve_tokens", serve_tokens); v("array_job", array_job); v("array_index", array_index);
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

// Who may call a running replica changed (a grant, a revoke, a new token): the SHA-256 of each
// token allowed now. The agent rewrites the replica's token file; kiln-serve re-reads it.
struct ServeTokens {
  static constexpr const char* kType = "serve_tokens";
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::vector<std::string> tokens;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); v("tokens", tokens); }
};

struct ExitAck {
  static constexpr const char* kType = "exit_ack";
  int64_t job_id = 0;
  int64_t attempt = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("attempt", attempt); }
};

}  // namespace kiln::protocol
