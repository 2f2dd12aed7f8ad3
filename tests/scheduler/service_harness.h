// A deterministic harness for the scheduler daemon: the real SchedulerService, with its real
// SQLite store in a scratch directory, driven on a FakeClock through an in-memory transport, with
// fake workers and clients that the test steps by hand. No sockets, threads or processes: a test
// decides exactly which message arrives when, and where the scheduler is killed and restarted.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/protocol/codec.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::testing {

// The network between the scheduler under test and the harness's peers.
struct InMemoryWire {
  // To the scheduler: [peer][envelope][binary...] and the connection's label ("curve:KEY").
  std::deque<std::pair<transport::Frames, std::string>> to_scheduler;
  // From the scheduler, by peer: [envelope][binary...].
  std::map<std::string, std::deque<transport::Frames>> to_peer;
};

class InMemoryTransport final : public service::ServiceTransport {
 public:
  explicit InMemoryTransport(InMemoryWire& wire) : wire_(wire) {}
  const std::string& endpoint() const override { return endpoint_; }
  void Wait(int, const service::ConnectionDecider&) override {}
  std::optional<transport::Frames> Receive(std::string* connection) override;
  Status Send(const transport::Frames& frames, bool to_worker) override;

 private:
  InMemoryWire& wire_;
  std::string endpoint_ = "inmemory://scheduler";
};

// A message a peer received: its envelope and binary frames.
struct Received {
  protocol::Envelope envelope;
  transport::Frames binary;
  const nlohmann::json& body() const { return envelope.body; }
};

class ServiceHarness {
 public:
  explicit ServiceHarness(service::SchedulerOptions options = {});
  ~ServiceHarness();

  FakeClock& clock() { return clock_; }
  InMemoryWire& wire() { return wire_; }
  const std::string& state_dir() const { return options_.state_dir; }
  // The label of a connection made with the cluster's worker key (admitted).
  std::string WorkerConnection() const { return "curve:" + cluster_key_; }
  // Tokens of a user "alice" and an admin "root", created with the harness.
  const std::string& alice() const { return alice_; }
  const std::string& root() const { return root_; }

  // Lets `ms` pass, then runs one loop turn: every waiting message, timers, a pass if due.
  void Turn(Millis ms = 0);
  // Runs turns `step_ms` apart until `total_ms` have passed.
  void RunFor(Millis total_ms, Millis step_ms = 250);
  // kill -9: every message on its way to or from the scheduler is lost with it; a new one starts
  // on the same state directory (and recovers from it).
  void Restart();

  // A client request as `token`, answered within one turn: the reply (data, error, ...).
  Received Ask(const std::string& token, const protocol::Envelope& request);
  template <typename M>
  Received Ask(const std::string& token, const M& message) {
    return Ask(token, protocol::MakeEnvelope(message, "req-" + std::to_string(++requests_)));
  }
  // `kiln show JOB --json` as root.
  nlohmann::json Show(int64_t job_id);
  // Submits `spec` as alice; the job's id.
  int64_t Submit(const nlohmann::json& spec);

 private:
  void Start();

  service::SchedulerOptions options_;
  std::string dir_;
  FakeClock clock_;
  InMemoryWire wire_;
  std::unique_ptr<service::SchedulerService> scheduler_;
  std::string cluster_key_;
  std::string alice_;
  std::string root_;
  int64_t requests_ = 0;
};

// A worker agent as the scheduler sees it, modelled on worker/agent/agent.cpp: it registers when
// asked to, reports the attempts it has not ended (running, or exited without exit_ack), repeats
// unacknowledged exits with every heartbeat, and otherwise acts only when the test says so.
class FakeWorker {
 public:
  // `address`: where other nodes reach it (non-loopback, one per worker), for gangs that span
  // several nodes; empty for a worker that takes only single-node attempts.
  FakeWorker(ServiceHarness& harness, std::string name, int64_t slots = 2, int64_t gpus = 0,
             std::string address = "");
  const std::string& name() const { return name_; }

  void Send(const protocol::Envelope& envelope, transport::Frames binary = {});
  template <typename M>
  void Send(const M& message, transport::Frames binary = {}) {
    Send(protocol::MakeEnvelope(message, ""), std::move(binary));
  }
  void Register();
  // Heartbeat with the attempts not ended, and every exit not yet acknowledged; nothing before
  // the first Register (the agent is not started yet).
  void Heartbeat();
  // Reads what the scheduler sent: registers when asked to, files launches and kills, drops
  // acknowledged exits, keeps the other replies for Upload and Fetch.
  void Poll();
  // Launches received so far, and kills of attempts that were still running (Poll files them).
  const std::vector<protocol::LaunchJob>& launches() const { return launches_; }
  const std::vector<protocol::KillJob>& kills() const { return kills_; }
  // The launch of `job_id` received, if any (the latest).
  std::optional<protocol::LaunchJob> LaunchOf(int64_t job_id) const;

  // The attempt started: job_started, and it is reported as running from now on.
  void Start(int64_t job_id, int64_t attempt);
  // The attempt's processes ended: job_exited, repeated until exit_ack.
  void Exit(const protocol::JobExited& exited);
  // Uploads `bytes` as the checkpoint at `step` of the attempt, stopping after `stop_after` bytes
  // (an interrupted upload) when given. Returns the last ckpt_offset / ckpt_done / error.
  std::optional<Received> Upload(int64_t job_id, int64_t attempt, int64_t step,
                                 const std::string& bytes,
                                 std::optional<int64_t> stop_after = std::nullopt);
  // Reads the whole checkpoint `step` of `job_id` as a resuming agent does: (true, its bytes),
  // or (false, the error's message).
  std::pair<bool, std::string> Fetch(int64_t job_id, int64_t step, int64_t bytes);

 private:
  std::vector<protocol::RunningAttempt> NotEnded() const;
  // Replies kept by Poll that match `keep`, taken out.
  std::vector<Received> TakeReplies(const std::function<bool(const Received&)>& keep);

  ServiceHarness& harness_;
  std::string name_;
  std::string peer_;
  int64_t slots_;
  int64_t gpus_;
  std::string address_;
  bool started_ = false;  // Register was called
  std::vector<protocol::RunningAttempt> running_;
  std::map<std::pair<int64_t, int64_t>, protocol::JobExited> unacked_exits_;
  std::vector<protocol::LaunchJob> launches_;
  std::vector<protocol::KillJob> kills_;
  std::vector<Received> replies_;
};

// A spec that trains almost nothing: `ranks` ranks, 8 synthetic samples, one epoch.
nlohmann::json SmallSpec(const std::string& name, int64_t ranks);

}  // namespace kiln::testing
