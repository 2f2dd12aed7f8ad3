// The worker agent: one per node, one thread (Run). Registers with the scheduler, heartbeats,
// starts and stops job attempts (JobRun), and forwards what they produce.
//
// Connection protocol (Paranoid Pirate style), driven from Turn():
//   1. connect a DEALER (routing id chosen by ZeroMQ, unclaimable) and send `register`;
//   2. every second send `heartbeat` with the attempts running here (and repeat unacknowledged
//      `job_exited` reports until `exit_ack`);
//   3. after kWorkerReconnectAfterMs without hearing from the scheduler, drop the socket,
//      reconnect and register again (running attempts keep running meanwhile);
//   4. `reregister` from the scheduler also triggers a fresh `register`.
// Checkpoints are uploaded by the CheckpointUploader in the same loop, resuming after reconnects.
// On shutdown every running attempt is stopped (SIGTERM, then SIGKILL); the scheduler sees the
// worker come back without it and retries the job.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "worker/agent/account_reporter.h"
#include "worker/agent/checkpoint_uploader.h"
#include "worker/agent/core_allocator.h"
#include "worker/agent/gpu_stats.h"
#include "worker/agent/job_run.h"
#include "worker/agent/log_shipper.h"
#include "worker/agent/log_spool.h"

namespace kiln::agent {

// The admin command that admits this worker's key, quoted for pasting into bash (STATE_DIR is the
// scheduler's state dir, which the worker does not know).
std::string AllowCommand(const std::string& public_key, const std::string& node_name);

struct AgentOptions {
  std::string scheduler;
  std::string server_key;          // the scheduler's CURVE public key (Z85)
  transport::CurveKeyPair keys;    // this worker's: the cluster key or its own, admitted by the admin
  // The address other nodes reach this one at: mpirun's hostfile names the node by it, and the
  // launch socket (kiln-rsh -> this agent, CURVE with `keys`) listens on it.
  std::string address = "127.0.0.1";
  std::string name;
  int64_t slots = 1;
  std::vector<std::string> labels;  // offered to jobs' resources.labels
  int64_t gpus = -1;  // -1: detect through the CUDA driver
  // Run dirs of attempts that ended are removed this long after their last change (0: kept).
  Millis keep_run_dirs_ms = 86400LL * 1000;
  // Pin each single-node attempt's ranks to CPUs of their own while enough are free
  // (core_allocator.h); off, ranks float over every CPU of the node. Turn it off where several
  // agents share one machine (test clusters): each pins from the same first CPUs.
  bool pin_cpus = true;
  JobRunConfig run;
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& options, const Clock& clock,
                                               transport::Context& context);
  ~Agent();

  void Run(const std::atomic<bool>& stop);
  void Turn(int wait_ms);
  // Stops every running attempt and waits (up to the grace period plus a little) for them to go.
  void StopAll(const std::string& reason);
  // Receives the agent's Prometheus text every 2 s (kiln-worker --http serves it at /metrics).
  void SetMetricsSink(std::function<void(std::string)> sink);

 private:
  using AttemptKey = std::pair<int64_t, int64_t>;
  Agent(AgentOptions options, const Clock& clock, transport::Context& context);

  void Connect();
  void SendToScheduler(transport::Frames frames);
  // Logs (once a minute) why the scheduler dropped our connection during the handshake.
  void ExplainFailedHandshakes();
  void SendRegister();
  void SendHeartbeat();
  void OnMessage(const transport::Frames& frames);
  void OnLaunch(const protocol::Envelope& e);
  void OnKill(const protocol::Envelope& e);
  // kiln-rsh on a gang's leader asks for an MPI daemon here (launch socket).
  void OnRemoteExec(const transport::Frames& frames);
  void ReportExit(const AttemptKey& key, const protocol::JobExited& exited);
  std::vector<protocol::RunningAttempt> RunningAttempts() const;
  // Attempts running here, or ended but not yet acknowledged by the scheduler.
  std::set<AttemptKey> AttemptsNotEnded() const;
  // Removes the run dirs of attempts that ended more than keep_run_dirs_ms ago.
  void SweepRunDirs();
  // Cut off from the scheduler for nearly its lease: stops every attempt here before the
  // scheduler may place them elsewhere, so that no job runs twice at once.
  void FenceIfCutOff(Millis now);
  // Renders the metrics (agent_metrics.cpp) and hands them to the sink.
  void PublishMetrics(Millis now);
  std::function<void(std::string)> metrics_sink_;
  Millis next_metrics_at_ = 0;
  std::unique_ptr<GpuStats> gpu_stats_;  // NVML, opened with the first publish

  AgentOptions options_;
  const Clock& clock_;
  transport::Context& context_;
  std::unique_ptr<transport::Socket> socket_;
  std::unique_ptr<transport::Socket> launch_socket_;  // ROUTER for kiln-rsh
  std::string launch_endpoint_;
  int64_t memory_bytes_ = 0;
  int64_t gpus_ = 0;
  bool registered_ = false;
  Millis last_heard_ = 0;  // reset by a reconnect
  // Self-fencing: the scheduler's lease (from register_ack), and when it was last heard at all.
  std::optional<Millis> lease_ms_;
  Millis scheduler_heard_at_ = 0;
  bool fencing_ = false;
  std::string last_refusal_;
  transport::Socket::HandshakeReport handshakes_seen_;
  Millis last_handshake_note_at_ = 0;
  Millis last_refusal_logged_at_ = 0;
  Millis last_register_at_ = -1'000'000;
  Millis next_heartbeat_at_ = 0;
  Millis next_sweep_at_ = 0;
  // StopAll: exits from here on ask the scheduler to requeue their jobs.
  bool shutting_down_ = false;
  // How long StopAll waits, after the ranks stopped, for uploads and acknowledgements.
  static constexpr Millis kShutdownUploadWaitMs = 30000;
  std::map<AttemptKey, std::unique_ptr<JobRun>> runs_;
  // Exits wait until the attempt's checkpoints are uploaded, so the scheduler records the last
  // checkpoint before it decides the attempt's fate; then they are repeated until acknowledged.
  std::map<AttemptKey, protocol::JobExited> exits_waiting_for_uploads_;
  std::map<AttemptKey, protocol::JobExited> unacked_exits_;
  CheckpointUploader uploader_;
  LogShipper logs_;  // every attempt's output, until the scheduler acknowledged it
  LogSpool spool_;   // the same lines on disk, for an agent that restarts
  CoreAllocator cores_;  // CPUs pinned to running attempts (none when pinning is off)
  AccountReporter accounts_{LookUpUid};  // the accounts the scheduler asked about
  Millis next_account_check_ = 0;
  static constexpr Millis kAccountCheckEveryMs = 30000;
  void ReportAccounts(std::vector<protocol::AccountUid> accounts);
  // The account a launch's processes run as here; the error is the job's reason.
  Result<std::optional<RunAs>> AccountFor(const protocol::LaunchJob& launch);
  // Lines of an attempt's output: spooled, then shipped.
  void Ship(int64_t job_id, int64_t attempt, std::vector<std::string> lines);
};

}  // namespace kiln::agent
