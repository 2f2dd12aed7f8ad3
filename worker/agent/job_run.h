// One attempt of a job on this node: its run directory, the checkpoint it resumes from (fetched
// from the scheduler in chunks when it is not on a shared file system), its `mpirun` process
// group, and the ipc:// socket on which rank 0 reports progress and checkpoints. Owned and driven
// by the Agent's thread: Pump() moves output and reports to the scheduler through the sink.
//
// Run directory <work-dir>/jobs/<job>/attempt-<n>/:
//   spec.json  hostfile  output.log  agent.sock (ipc)  resume.ckpt (when resuming)  checkpoints/
#pragma once

#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/job_spec.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "worker/agent/checkpoint_uploader.h"
#include "worker/agent/process_group.h"

namespace kiln::agent {

struct JobRunConfig {
  std::string work_dir;
  std::string node_name;
  std::string trainer_path;  // kiln-train
  std::string mpirun_path = "mpirun";
  Millis kill_grace_ms = 3000;  // SIGTERM, then SIGKILL after this long
};

class JobRun {
 public:
  using Sink = std::function<void(transport::Frames)>;
  using CheckpointSink = std::function<void(PendingUpload)>;

  // Writes the run dir; then fetches the checkpoint to resume from, if any, and starts mpirun.
  static Result<std::unique_ptr<JobRun>> Start(const JobRunConfig& config,
                                               const protocol::LaunchJob& launch,
                                               transport::Context& context, Sink sink,
                                               CheckpointSink on_checkpoint, Millis now);
  ~JobRun();

  int64_t job_id() const { return job_id_; }
  int64_t attempt() const { return attempt_; }
  const std::string& run_dir() const { return run_dir_; }
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

 private:
  JobRun(const JobRunConfig& config, const protocol::LaunchJob& launch, std::string run_dir,
         std::unique_ptr<transport::Socket> reports, Sink sink, CheckpointSink on_checkpoint);
  Status StartProcess();
  void RequestNextChunk(Millis now);
  void ForwardOutput(bool* eof);
  void ForwardReports();
  void ForwardCheckpoint(const protocol::TrainCheckpoint& c);

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
  Millis fetch_sent_at_ = 0;
  std::optional<std::string> failure_;  // the attempt ended before mpirun ran
};

}  // namespace kiln::agent
