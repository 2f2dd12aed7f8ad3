// One attempt of a job on this node: its run directory, its `mpirun` process group, and the
// ipc:// socket on which rank 0 reports progress and checkpoints. Owned and driven by the Agent's
// thread: Pump() moves output and reports to the scheduler through the sink.
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
#include "common/protocol/codec.h"
#include "common/transport/socket.h"
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

  // Writes the run dir and starts mpirun. `resume_bytes` is the checkpoint to resume from, if any.
  static Result<std::unique_ptr<JobRun>> Start(const JobRunConfig& config,
                                               const protocol::LaunchJob& launch,
                                               const std::string* resume_bytes,
                                               transport::Context& context, Sink sink);
  ~JobRun();

  int64_t job_id() const { return job_id_; }
  int64_t attempt() const { return attempt_; }
  const std::string& run_dir() const { return run_dir_; }
  const std::string& tag() const { return group_.tag(); }

  void AddTo(transport::Poller& poller);
  // Forwards output and reports; reaps mpirun. Returns the exit report once the group is gone.
  std::optional<protocol::JobExited> Pump(Millis now);
  // SIGTERM to the group now, SIGKILL to it and every tagged process after the grace period.
  void Kill(const std::string& reason, Millis now);

 private:
  JobRun(const JobRunConfig& config, const protocol::LaunchJob& launch, std::string run_dir,
         ProcessGroup group, std::unique_ptr<transport::Socket> reports, Sink sink);
  void ForwardOutput(bool* eof);
  void ForwardReports();
  void ForwardCheckpoint(const protocol::TrainCheckpoint& c);
  void RemoveOldCheckpoints();
  // A line from the agent itself into the job's log (and the agent's own log).
  void Note(const std::string& line);

  JobRunConfig config_;
  int64_t job_id_;
  int64_t attempt_;
  std::string run_dir_;
  ProcessGroup group_;
  std::unique_ptr<transport::Socket> reports_;
  Sink sink_;
  std::ofstream output_log_;
  std::string kill_reason_;
  std::optional<Millis> kill_deadline_;
  bool killed_hard_ = false;
  int keep_last_;
};

}  // namespace kiln::agent
