// One attempt of a job on this node: its run directory, the checkpoint it resumes from (fetched
// from the scheduler in chunks when it is not on a shared file system), its `mpirun` process
// group, and the ipc:// socket on which rank 0 reports progress and checkpoints. Owned and driven
// by the Agent's thread: Pump() moves output and reports to the scheduler through the sink.
//
// Run directory <work-dir>/jobs/<job>/attempt-<n>/:
//   spec.json  hostfile  output.log  agent.sock (ipc)  resume.ckpt (when resuming)  checkpoints/
//   launch.json (multi-node leader: where kiln-rsh finds the other nodes' agents; 0600)
//
// A gang on several nodes (launch.hosts non-empty) has one leader, the first host: its JobRun
// runs mpirun with a hostfile of every host and kiln-rsh as OpenMPI's rsh agent. On every other
// node the JobRun is a member: it prepares the run dir (and the checkpoint to resume from), then
// waits for kiln-rsh to ask, with the attempt's secret, for an MPI daemon (StartRemote). The
// daemon detaches, so a member's attempt lasts while any process carrying its run tag lives.
#pragma once

#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/protocol/codec.h"
#include "common/safe_open.h"
#include "common/transport/socket.h"
#include "worker/agent/cgroup.h"
#include "worker/agent/checkpoint_uploader.h"
#include "worker/agent/memory_watch.h"
#include "worker/agent/process_group.h"
#include "worker/agent/run_as.h"
#include "worker/agent/stall_watch.h"

namespace kiln::agent {

struct JobRunConfig {
  std::string work_dir;
  std::string node_name;
  std::string trainer_path;  // kiln-train
  std::string rsh_path;      // kiln-rsh, OpenMPI's rsh agent for gangs on several nodes
  std::string mpirun_path = "mpirun";
  std::string serve_path;             // kiln-serve, for a service's replica (spec.serve)
  std::string address = "127.0.0.1";  // this node's --address: where replicas listen
  Millis kill_grace_ms = 3000;  // SIGTERM, then SIGKILL after this long
  // The delegated cgroup each attempt gets a child of (cgroup.h); none: the watchdog alone.
  const DelegatedCgroup* cgroup = nullptr;
};

class JobRun {
 public:
  using Sink = std::function<void(transport::Frames)>;
  using CheckpointSink = std::function<void(PendingUpload)>;
  // Output lines of this attempt, in order (the agent's LogShipper numbers and ships them).
  using LineSink = std::function<void(int64_t job_id, int64_t attempt, std::vector<std::string>)>;

  // Writes the run dir; then fetches the checkpoint to resume from, if any, and starts mpirun.
  // `cpu_ids`: the CPUs of this node the ranks are pinned to, cpus_per_rank per local rank in
  // rank order (core_allocator.h); empty: not pinned. `as`: the account every process of the
  // attempt runs as (run_as.h), which is given the run dir (0700); none: the agent's own.
  static Result<std::unique_ptr<JobRun>> Start(const JobRunConfig& config,
                                               const protocol::LaunchJob& launch,
                                               transport::Context& context, Sink sink,
                                               LineSink lines, CheckpointSink on_checkpoint,
                                               Millis now, std::vector<int> cpu_ids = {},
                                               std::optional<RunAs> as = std::nullopt);
  ~JobRun();

  // What the agent's /metrics shows of this attempt here: the latest samples/s rank 0 reported
  // (negative before the first report, and on gang members), and its ranks' resident memory.
  struct Stats {
    double samples_per_s = -1;
    int64_t rss_bytes = 0;
    int ranks = 0;             // rank processes found running (/proc)
    int64_t slots_here = 0;    // the ranks this node was given (its slots in use)
  };
  Stats CurrentStats(Millis now);

  int64_t job_id() const { return job_id_; }
  int64_t attempt() const { return attempt_; }
  const std::string& run_dir() const { return run_dir_; }
  const std::string& cgroup_dir() const { return cgroup_dir_; }  // empty: none
  // Envelope id of this run's checkpoint reads; replies carry it back.
  std::string FetchId() const;

  void AddTo(transport::Poller& poller);
  // Forwards output and reports; reaps mpirun. Returns the exit report once the attempt is over.
  std::optional<protocol::JobExited> Pump(Millis now);
  // SIGTERM to the group now, SIGKILL to it and every tagged process after the grace period.
  void Kill(const std::string& reason, Millis now);
  // A reply to this run's checkpoint read: ckpt_data (+ bytes) or error.
  void OnFetchReply(const protocol::Envelope& e, const transport::Frames& frames, Millis now);
  // A line from the agent itself into the job's log (and the agent's own log).
  void Note(const std::string& line);
  // A replica's callers changed: rewrites the token file kiln-serve re-reads.
  Status SetServeTokens(const std::vector<std::string>& tokens);

  bool is_member() const { return member_; }
  const std::string& launch_secret() const { return launch_.launch_secret; }
  // A member that has its run dir (and checkpoint) ready and has not started a daemon yet.
  bool ReadyForRemote() const { return member_ && !fetching_ && !group_ && !kill_deadline_; }
  // Member: runs `command` (from kiln-rsh) through /bin/sh with the ranks' environment.
  Status StartRemote(const std::string& command, const std::string& requester);
  // Member: once the command ended, its exit for the kiln-rsh that asked (once).
  std::optional<std::pair<std::string, protocol::RemoteExit>> TakeRemoteExit();

 private:
  JobRun(const JobRunConfig& config, const protocol::LaunchJob& launch, std::string run_dir,
         std::unique_ptr<transport::Socket> reports, Sink sink, LineSink lines,
         CheckpointSink on_checkpoint);
  Status StartProcess();
  // kiln-serve in place of mpirun, for a service's replica (job_run_serve.cpp).
  Status StartServer();
  // Where the replica's token file is (worker/serve/access_tokens.h).
  std::string ServeTokensPath() const;
  // The program the attempt's own processes run (kiln-train, or kiln-serve for a replica).
  std::string ProgramName() const;
  // Starts the attempt's first process (as its account, in its cgroup when there is one).
  Result<ProcessGroup> StartGroup(const std::vector<std::string>& argv,
                                  const std::vector<std::pair<std::string, std::string>>& env);
  // OMP/BLAS threads, KILN_* variables, GPU ids, run-as-root: what the ranks' processes need.
  std::vector<std::pair<std::string, std::string>> RankEnvironment() const;
  std::optional<protocol::JobExited> PumpMember(Millis now);
  // `exited` with the error of the first rank that failed here, when it did not end well.
  protocol::JobExited WithRankFailure(protocol::JobExited exited) const;
  void RequestNextChunk(Millis now);
  void ForwardOutput(bool* eof);
  void ForwardReports();
  void ForwardCheckpoint(const protocol::TrainCheckpoint& c);
  // Once a second: reads the ranks' step beacons here and, when a rank hangs, kills the attempt
  // (SIGKILL: a hung rank saves nothing) with the stall as its reason.
  void WatchForStalls(Millis now);
  // 4 times a second, with resources.memory_per_rank set: kills the attempt when a rank here is
  // over it (OutOfMemory; not retried).
  void WatchMemory(Millis now);
  // Kills the attempt at once for what a watchdog found; `reason` becomes the exit's rank error.
  void KillForWatchdog(const std::string& reason, bool permanent, Millis now);

  JobRunConfig config_;
  protocol::LaunchJob launch_;
  JobSpec spec_;  // parsed once from launch_.spec (the scheduler validated it)
  int64_t job_id_;
  int64_t attempt_;
  std::string run_dir_;
  std::optional<ProcessGroup> group_;
  std::unique_ptr<transport::Socket> reports_;
  std::string report_key_;  // CURVE public key of reports_, for kiln-train
  Sink sink_;
  LineSink lines_;
  CheckpointSink on_checkpoint_;
  std::ofstream output_log_;
  std::string kill_reason_;
  std::optional<Millis> kill_deadline_;
  bool killed_hard_ = false;
  bool shared_fs_ = false;
  std::string checkpoint_dir_;
  // Fetching the checkpoint to resume from (before mpirun starts).
  bool fetching_ = false;
  int64_t fetched_ = 0;
  std::vector<int> cpu_ids_;                   // pinned CPUs (empty: not pinned)
  std::optional<RunAs> as_;                    // the job's account (none: the agent's)
  std::string cgroup_dir_;                     // the attempt's cgroup (empty: none)
  // The uid every process of the attempt has: only processes of it are counted or stopped as
  // the attempt's (any process may carry its run tag).
  uid_t owner() const { return as_ ? as_->uid : ::geteuid(); }
  UniqueFd resume_part_;                       // resume.ckpt.part while it is fetched
  std::unique_ptr<Sha256Stream> resume_hash_;  // of the bytes fetched so far
  Millis fetch_sent_at_ = 0;
  std::optional<std::string> failure_;  // the attempt ended before mpirun ran
  std::string tag_;      // KILN_RUN_TAG of every process of this attempt on this node
  bool leader_ = false;  // runs mpirun for a gang on several nodes
  bool member_ = false;  // hosts part of a gang whose leader is another node
  std::string remote_requester_;
  std::optional<int> remote_exit_code_;
  bool remote_exit_taken_ = false;
  std::vector<std::string> remote_output_;
  Millis next_liveness_check_ = 0;
  Millis waiting_since_ = 0;  // member: ready, waiting for the leader's kiln-rsh
  StallWatch stall_watch_;
  Millis next_stall_check_ = 0;
  // The ranks' memory: checked against memory_per_rank when the spec sets one (the watchdog),
  // and read for /metrics.
  std::optional<RankMemorySampler> memory_sampler_;
  double samples_per_s_ = -1;  // from rank 0's latest progress report
  Millis next_memory_check_ = 0;
  // The attempt was killed by a watchdog (a hung rank, a rank over its memory) for this reason.
  std::optional<std::string> watchdog_reason_;
  bool watchdog_permanent_ = false;
};

}  // namespace kiln::agent
