// Every message kiln processes exchange, as plain structs. Each declares its wire type name
// (kType) and its fields once (Fields), which gives it its JSON codec (see codec.h).
//
// Who sends what:
//   CLI -> scheduler      submit, queue, show, cancel, logs, nodes, ckpt_ls, ckpt_read, ckpt_rm,
//                         job_admin, node_admin, whoami, metrics_history, deploy, undeploy,
//                         services, service_grant (each with the user's token in envelope.auth)
//   scheduler -> CLI      submit_reply, cancel_reply, data (read views), error
//   worker -> scheduler   register, heartbeat, accounts, job_started, log, progress,
//                         checkpoint(+bytes), job_exited          (worker_messages.h)
//   scheduler -> worker   register_ack, check_accounts, heartbeat, reregister, launch(+checkpoint
//                         bytes), kill, exit_ack, serve_tokens                    (worker_messages.h)
//   kiln-train -> worker  train_progress, train_checkpoint (over the run dir's ipc:// socket)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/worker_messages.h"

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
  // A job array: "INDICES[%MAX]" (common/job_array.h), one task per index.
  std::optional<std::string> array;
  // A sweep (docs/sweeps.md) without its "base", which is `spec`: an array of trials.
  std::optional<json> sweep;
  template <class V> void Fields(V& v) {
    v("request_id", request_id); v("spec", spec); v("resume_from_job", resume_from_job);
    v("resume_from_step", resume_from_step); v("user", user); v("hold", hold); v("array", array);
    v("sweep", sweep);
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

// With array_index, job_id is an array and the request is about its task with that index
// ("12_40"): for cancel and job_admin, a pending task without a row of its own gets one first.
struct ShowRequest {
  static constexpr const char* kType = "show";
  int64_t job_id = 0;
  std::optional<int64_t> array_index;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("array_index", array_index); }
};

struct CancelRequest {
  static constexpr const char* kType = "cancel";
  int64_t job_id = 0;
  std::optional<int64_t> array_index;
  template <class V> void Fields(V& v) { v("job_id", job_id); v("array_index", array_index); }
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
  std::optional<int64_t> array_index;
  template <class V> void Fields(V& v) {
    v("job_id", job_id); v("action", action); v("priority", priority);
    v("array_index", array_index);
  }
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

// A job's metrics history (scheduler/core/metric_history.h), answered with data
// {"job_id", "step": [POINT...], "epoch": [POINT...]}, each POINT {"time", "attempt", fields...}.
struct MetricsHistoryRequest {
  static constexpr const char* kType = "metrics_history";
  int64_t job_id = 0;
  template <class V> void Fields(V& v) { v("job_id", job_id); }
};

// Deploys a checkpoint as a service (docs/serving.md): `kiln deploy JOB[:STEP] --name NAME`.
// With `update`, the existing service NAME rolls to the checkpoint (and takes any other field
// given); without, NAME must be new. Absent fields keep their defaults (or, on update, their
// values). Answered with data: the service's view.
struct DeployRequest {
  static constexpr const char* kType = "deploy";
  std::string name;
  int64_t job_id = 0;
  std::optional<int64_t> step;  // absent: the latest (or, with best, the best)
  bool best = false;            // the best checkpoint by the job's checkpoint.keep_best metric
  bool update = false;
  std::optional<int64_t> replicas;
  std::optional<int64_t> cpus_per_replica;
  std::optional<std::string> memory_per_replica;  // "2G"; "0": not accounted
  std::optional<int64_t> gpus_per_replica;
  std::optional<int64_t> max_batch;
  std::optional<double> max_delay_ms;
  template <class V> void Fields(V& v) {
    v("name", name); v("job_id", job_id); v("step", step); v("best", best); v("update", update);
    v("replicas", replicas); v("cpus_per_replica", cpus_per_replica);
    v("memory_per_replica", memory_per_replica); v("gpus_per_replica", gpus_per_replica);
    v("max_batch", max_batch); v("max_delay_ms", max_delay_ms);
  }
};

// Stops every replica of the service and forgets it.
struct UndeployRequest {
  static constexpr const char* kType = "undeploy";
  std::string name;
  template <class V> void Fields(V& v) { v("name", name); }
};

// The services the caller may see (its own, those granted to it; an admin's: all), or one.
struct ServicesRequest {
  static constexpr const char* kType = "services";
  std::optional<std::string> name;
  template <class V> void Fields(V& v) { v("name", name); }
};

// The owner lets another user call the service (or stops letting them: revoke).
struct ServiceGrantRequest {
  static constexpr const char* kType = "service_grant";
  std::string name;
  std::string user;
  bool revoke = false;
  template <class V> void Fields(V& v) { v("name", name); v("user", user); v("revoke", revoke); }
};

// Reply to the read requests (queue, show, logs, nodes, ckpt_ls, metrics_history): a JSON view.
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
  X(CheckAccounts) X(AccountReport) X(MetricsHistoryRequest) X(DeployRequest)                 \
  X(UndeployRequest) X(ServicesRequest) X(ServiceGrantRequest) X(ServeTokens)

}  // namespace kiln::protocol
