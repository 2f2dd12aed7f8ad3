#include "worker/agent/agent.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/config.h"
#include "common/file_util.h"
#include "common/quantities.h"
#include "common/shell_quote.h"
#include "worker/agent/node_resources.h"
#include "worker/agent/run_dir_janitor.h"

namespace kiln::agent {

std::string AllowCommand(const std::string& public_key, const std::string& node_name) {
  // The key after "--": a Z85 key may start with '-', which would otherwise read as an option.
  return "kiln-scheduler --state-dir STATE_DIR worker allow --name " + ShellQuote(node_name) +
         " -- " + ShellQuote(public_key);
}

using protocol::Envelope;

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options, const Clock& clock,
                                             transport::Context& context) {
  if (options.name.empty()) return Status::InvalidArgument("--name is required");
  if (options.slots < 1) return Status::InvalidArgument("--slots: must be >= 1");
  KILN_RETURN_IF_ERROR(MakeDirs(options.run.work_dir));
  std::unique_ptr<Agent> agent(new Agent(options, clock, context));
  agent->launch_socket_ =
      std::make_unique<transport::Socket>(context, transport::SocketKind::kRouter, 1 << 20);
  KILN_RETURN_IF_ERROR(agent->launch_socket_->MakeCurveServer(options.keys));
  auto bound = agent->launch_socket_->Bind("tcp://" + options.address + ":*");
  if (!bound.ok()) return Status::InvalidArgument("--address: " + bound.status().message());
  agent->launch_endpoint_ = *bound;
  // Ranks left behind by an agent of this node that died without stopping them.
  int orphans = KillTagged(AnyAttemptOfNode(options.name), SIGKILL);
  if (orphans > 0) spdlog::warn("killed {} orphaned processes of earlier attempts", orphans);
  // Output an earlier agent of this node shipped but never saw acknowledged: sent again once
  // this one has registered.
  size_t recovered_lines = 0;
  std::vector<LogSpool::Unacknowledged> unacknowledged = agent->spool_.Recover();
  for (auto& u : unacknowledged) {
    recovered_lines += u.lines.size();
    agent->logs_.Restore(u.job_id, u.attempt, u.first_line, std::move(u.lines));
  }
  if (recovered_lines > 0) {
    spdlog::info(
        "{} lines of output of {} earlier attempts were never acknowledged; sending them "
        "again",
        recovered_lines, unacknowledged.size());
  }
  agent->Connect();
  return agent;
}

Agent::Agent(AgentOptions options, const Clock& clock, transport::Context& context)
    : options_(std::move(options)),
      clock_(clock),
      context_(context),
      uploader_(
          clock, [this](transport::Frames f) { SendToScheduler(std::move(f)); },
          [this](int64_t job_id, int64_t attempt, const std::string& line) {
            auto run = runs_.find({job_id, attempt});
            if (run != runs_.end()) {
              run->second->Note(line);
            } else {
              spdlog::warn("job {} attempt {}: {}", job_id, attempt, line);
              Ship(job_id, attempt, {"[kiln-worker] " + line});
            }
          }),
      logs_([this](transport::Frames f) { SendToScheduler(std::move(f)); }),
      spool_(options_.run.work_dir),
      cores_(options_.pin_cpus ? AllowedCpus() : std::vector<int>{}) {
  memory_bytes_ = DetectMemoryBytes();
  gpus_ = options_.gpus >= 0 ? options_.gpus : DetectCudaGpus();
}

Agent::~Agent() = default;

void Agent::Ship(int64_t job_id, int64_t attempt, std::vector<std::string> lines) {
  for (auto& line : lines) std::replace(line.begin(), line.end(), '\n', ' ');  // one line each
  spool_.Append(job_id, attempt, lines);
  logs_.Add(job_id, attempt, std::move(lines), clock_.MonotonicMs());
}

void Agent::Connect() {
  // No chosen routing id: ZeroMQ gives the connection one no other peer can claim, so nobody
  // can take over what the scheduler sends this worker. After a reconnect the scheduler learns
  // the new one when this worker registers again.
  socket_ = std::make_unique<transport::Socket>(context_, transport::SocketKind::kDealer);
  Status curve = socket_->MakeCurveClient(options_.server_key, options_.keys);
  if (!curve.ok()) spdlog::error("{}", curve.ToString());
  (void)socket_->WatchHandshakes();
  handshakes_seen_ = {};
  Status s = socket_->Connect(options_.scheduler);
  if (!s.ok()) spdlog::error("{}", s.ToString());
  registered_ = false;
  last_heard_ = clock_.MonotonicMs();
  if (scheduler_heard_at_ == 0) scheduler_heard_at_ = last_heard_;
  SendRegister();
  uploader_.Restart();
}

void Agent::ExplainFailedHandshakes() {
  const auto report = socket_->Handshakes();
  if (report.failed == handshakes_seen_.failed) return;
  const bool refused = report.refused > handshakes_seen_.refused;
  handshakes_seen_ = report;
  const Millis now = clock_.MonotonicMs();
  if (now - last_handshake_note_at_ < 60000 && last_handshake_note_at_ != 0) return;
  last_handshake_note_at_ = now;
  if (refused) {
    spdlog::error("the scheduler refused this worker's connection: worker not admitted (key {}); "
                  "on the scheduler host run: {}   (or start the worker with the cluster key, "
                  "worker-cluster.key)",
                  options_.keys.public_key, AllowCommand(options_.keys.public_key, options_.name));
  } else {
    spdlog::error("the encryption handshake with the scheduler at {} failed: is --server-key "
                  "that scheduler's key (kiln-scheduler key show)?", options_.scheduler);
  }
}

void Agent::SendToScheduler(transport::Frames frames) {
  Status s = socket_->Send(frames);
  if (!s.ok()) spdlog::debug("message to scheduler dropped: {}", s.ToString());
}

std::set<Agent::AttemptKey> Agent::AttemptsNotEnded() const {
  // An attempt that exited is still ours until the scheduler acknowledged its exit; otherwise a
  // re-register in between would make the scheduler fail an attempt that in fact succeeded.
  std::set<AttemptKey> keys;
  for (const auto& [key, run] : runs_) keys.insert(key);
  for (const auto& [key, exited] : exits_waiting_for_uploads_) keys.insert(key);
  for (const auto& [key, exited] : unacked_exits_) keys.insert(key);
  return keys;
}

std::vector<protocol::RunningAttempt> Agent::RunningAttempts() const {
  std::vector<protocol::RunningAttempt> running;
  for (const auto& key : AttemptsNotEnded()) running.push_back({key.first, key.second});
  return running;
}

void Agent::SweepRunDirs() {
  if (options_.keep_run_dirs_ms <= 0) return;
  std::set<AttemptKey> in_use = AttemptsNotEnded();
  std::vector<RunDirInfo> dirs = ListRunDirs(options_.run.work_dir);
  for (const auto& d : dirs) {
    if (uploader_.HasPendingFor(d.job_id, d.attempt)) in_use.insert({d.job_id, d.attempt});
  }
  std::vector<std::string> old = RunDirsToRemove(dirs, in_use, clock_.WallMs(),
                                                 options_.keep_run_dirs_ms);
  // A few per turn: deleting big trees must not stall the loop past the worker timeout.
  constexpr size_t kRemovePerSweep = 4;
  if (old.size() > kRemovePerSweep) {
    old.resize(kRemovePerSweep);
    next_sweep_at_ = clock_.MonotonicMs() + 1000;
  }
  const int removed = RemoveRunDirs(old);
  if (removed > 0) {
    spdlog::info("removed {} run dirs of attempts that ended more than {} ago", removed,
                 FormatDuration(options_.keep_run_dirs_ms / 1000));
  }
}

void Agent::SendRegister() {
  protocol::RegisterWorker r{options_.name, options_.slots, memory_bytes_, gpus_, RunningAttempts(),
                             options_.labels, options_.address, launch_endpoint_};
  r.agent_uid = static_cast<int64_t>(::geteuid());
  r.agent_account = OwnAccount();
  r.accounts = accounts_.Known();
  SendToScheduler(protocol::Encode(r));
  last_register_at_ = clock_.MonotonicMs();
  next_heartbeat_at_ = last_register_at_ + kHeartbeatIntervalMs;
}

void Agent::SendHeartbeat() {
  SendToScheduler(protocol::Encode(protocol::Heartbeat{options_.name, RunningAttempts()}));
  for (const auto& [key, exited] : unacked_exits_) SendToScheduler(protocol::Encode(exited));
}

void Agent::Run(const std::atomic<bool>& stop) {
  spdlog::info("worker {}: {} slots, {} GPUs, {} memory; scheduler {}", options_.name,
               options_.slots, gpus_, FormatSize(memory_bytes_), options_.scheduler);
  while (!stop.load()) Turn(100);
  StopAll("worker agent shutting down");
}

void Agent::Turn(int wait_ms) {
  transport::Poller poller;
  poller.AddSocket(*socket_);
  poller.AddSocket(*launch_socket_);
  for (auto& [key, run] : runs_) run->AddTo(poller);
  Status waited = poller.Wait(wait_ms);
  if (!waited.ok()) spdlog::warn("{}", waited.ToString());

  while (auto frames = socket_->Receive()) OnMessage(*frames);
  while (auto frames = launch_socket_->Receive()) OnRemoteExec(*frames);
  ExplainFailedHandshakes();

  const Millis now = clock_.MonotonicMs();
  for (auto it = runs_.begin(); it != runs_.end();) {
    auto exited = it->second->Pump(now);
    if (auto remote = it->second->TakeRemoteExit()) {
      transport::Frames reply = protocol::Encode(remote->second);
      reply.insert(reply.begin(), remote->first);
      (void)launch_socket_->Send(reply);
    }
    if (!exited) {
      ++it;
      continue;
    }
    const AttemptKey key = it->first;
    it = runs_.erase(it);
    cores_.Release(key);
    if (shutting_down_ && !exited->permanent.value_or(false)) exited->requeue = true;
    exits_waiting_for_uploads_[key] = *exited;
  }
  uploader_.Pump();
  logs_.Pump(now);
  for (const auto& [job_id, attempt] : logs_.ForgetAcknowledged(AttemptsNotEnded())) {
    spool_.Close(job_id, attempt);
  }
  if (now >= next_sweep_at_) {
    next_sweep_at_ = now + JanitorInterval(options_.keep_run_dirs_ms);
    SweepRunDirs();
    if (options_.run.cgroup != nullptr) {
      std::set<std::string> live;
      for (const auto& [key, run] : runs_) {
        if (!run->cgroup_dir().empty()) live.insert(run->cgroup_dir());
      }
      options_.run.cgroup->SweepLeftovers(live);
    }
  }
  for (auto it = exits_waiting_for_uploads_.begin(); it != exits_waiting_for_uploads_.end();) {
    if (uploader_.HasPendingFor(it->first.first, it->first.second)) {
      ++it;
      continue;
    }
    ReportExit(it->first, it->second);
    it = exits_waiting_for_uploads_.erase(it);
  }

  FenceIfCutOff(now);
  if (now - last_heard_ > kWorkerReconnectAfterMs) {
    spdlog::warn("no word from the scheduler for {} ms; reconnecting", now - last_heard_);
    Connect();
  } else if (now >= next_heartbeat_at_) {
    next_heartbeat_at_ = now + kHeartbeatIntervalMs;
    if (registered_) {
      SendHeartbeat();
    } else {
      SendRegister();
    }
  }
  if (registered_ && now >= next_account_check_) {  // an account added or removed here since
    next_account_check_ = now + kAccountCheckEveryMs;
    ReportAccounts(accounts_.Recheck());
  }
  if (metrics_sink_ && now >= next_metrics_at_) PublishMetrics(now);
}

void Agent::FenceIfCutOff(Millis now) {
  if (!lease_ms_ || runs_.empty()) return;
  // Stopped, SIGKILL included, with 2 s to spare before the scheduler's lease ends (at least half
  // the lease in any case).
  const Millis fence_after =
      std::max(*lease_ms_ / 2, *lease_ms_ - options_.run.kill_grace_ms - 2000);
  const Millis silent = now - scheduler_heard_at_;
  if (silent < fence_after) return;
  const std::string reason = "no word from the scheduler for " + std::to_string(silent / 1000) +
                             " s: stopped before its lease of " +
                             std::to_string(*lease_ms_ / 1000) +
                             " s ends, so that it is not run twice (self-fencing)";
  if (!fencing_) spdlog::error("{}; stopping {} attempt(s)", reason, runs_.size());
  fencing_ = true;
  for (auto& [key, run] : runs_) run->Kill(reason, now);  // once each: Kill is idempotent
}

void Agent::ReportExit(const AttemptKey& key, const protocol::JobExited& exited) {
  unacked_exits_[key] = exited;
  SendToScheduler(protocol::Encode(exited));
}

void Agent::OnMessage(const transport::Frames& frames) {
  if (frames.empty()) return;
  auto envelope = protocol::DecodeEnvelope(frames[0]);
  if (!envelope.ok()) {
    spdlog::warn("bad message from scheduler: {}", envelope.status().message());
    return;
  }
  last_heard_ = clock_.MonotonicMs();
  scheduler_heard_at_ = last_heard_;
  fencing_ = false;
  const Envelope& e = *envelope;
  if (e.id.rfind("fetch-", 0) == 0) {  // a reply to a JobRun's checkpoint read
    for (auto& [key, run] : runs_) {
      if (run->FetchId() == e.id) run->OnFetchReply(e, frames, clock_.MonotonicMs());
    }
    return;
  }
  if (e.type == protocol::CheckpointOffset::kType) {
    auto m = protocol::DecodeBody<protocol::CheckpointOffset>(e);
    if (m.ok()) uploader_.OnOffset(*m);
  } else if (e.type == protocol::CheckpointDone::kType) {
    auto m = protocol::DecodeBody<protocol::CheckpointDone>(e);
    if (m.ok()) uploader_.OnDone(*m);
  } else if (e.type == protocol::RegisterAck::kType) {
    if (!registered_) spdlog::info("registered with the scheduler");
    registered_ = true;
    auto ack = protocol::DecodeBody<protocol::RegisterAck>(e);
    if (ack.ok() && ack->lease_ms && *ack->lease_ms > 0) lease_ms_ = *ack->lease_ms;
    if (ack.ok() && ack->accounts) ReportAccounts(accounts_.Check(*ack->accounts));
    // What was sent before may have been lost with the old connection or scheduler: output
    // first (it comes before the exit it belongs to), then the exits.
    logs_.Restart(clock_.MonotonicMs());
    for (const auto& [key, exited] : unacked_exits_) SendToScheduler(protocol::Encode(exited));
  } else if (e.type == protocol::Reregister::kType) {
    // Every message sent before our register arrived is answered with reregister: send one
    // register per heartbeat interval, not one per answer.
    registered_ = false;
    if (clock_.MonotonicMs() - last_register_at_ >= kHeartbeatIntervalMs) SendRegister();
  } else if (e.type == protocol::CheckAccounts::kType) {
    auto check = protocol::DecodeBody<protocol::CheckAccounts>(e);
    if (check.ok()) ReportAccounts(accounts_.Check(check->accounts));
  } else if (e.type == protocol::LaunchJob::kType) {
    OnLaunch(e);
  } else if (e.type == protocol::KillJob::kType) {
    OnKill(e);
  } else if (e.type == protocol::ServeTokens::kType) {
    auto tokens = protocol::DecodeBody<protocol::ServeTokens>(e);
    if (!tokens.ok()) return;
    auto it = runs_.find({tokens->job_id, tokens->attempt});
    if (it == runs_.end()) return;
    if (Status set = it->second->SetServeTokens(tokens->tokens); !set.ok()) {
      spdlog::warn("job {}: cannot update the replica's tokens: {}", tokens->job_id, set.message());
    }
  } else if (e.type == protocol::LogAck::kType) {
    auto ack = protocol::DecodeBody<protocol::LogAck>(e);
    if (ack.ok()) {
      logs_.OnAck(*ack, clock_.MonotonicMs());
      spool_.Acknowledged(ack->job_id, ack->attempt, ack->next_line);
    }
  } else if (e.type == protocol::ExitAck::kType) {
    auto ack = protocol::DecodeBody<protocol::ExitAck>(e);
    if (ack.ok() && unacked_exits_.erase({ack->job_id, ack->attempt}) > 0) {
      // --keep-run-dirs counts from here, the attempt's end, not from its last output line.
      MarkRunDirEnded(options_.run.work_dir, ack->job_id, ack->attempt);
    }
  } else if (e.type == protocol::ErrorReply::kType) {
    auto error = protocol::DecodeBody<protocol::ErrorReply>(e);
    if (!error.ok()) return;
    // A worker that is not admitted hears this for every message: say it once a minute.
    const Millis now = clock_.MonotonicMs();
    if (error->message != last_refusal_ || now - last_refusal_logged_at_ >= 60000) {
      spdlog::warn("scheduler refused a message: {}", error->message);
      last_refusal_ = error->message;
      last_refusal_logged_at_ = now;
    }
  } else if (e.type != protocol::Heartbeat::kType) {
    spdlog::warn("unexpected message type from scheduler: {}", e.type);
  }
}

void Agent::OnLaunch(const Envelope& e) {
  auto launch = protocol::DecodeBody<protocol::LaunchJob>(e);
  if (!launch.ok()) {
    spdlog::error("bad launch: {}", launch.status().message());
    return;
  }
  AttemptKey key{launch->job_id, launch->attempt};
  if (runs_.count(key) || unacked_exits_.count(key) || exits_waiting_for_uploads_.count(key)) {
    return;  // a repeated launch
  }
  if (shutting_down_) {  // placed here just before the node left: back to the queue
    ReportExit(key, protocol::JobExited{launch->job_id, launch->attempt, 127, 0,
                                        "worker " + options_.name + " is shutting down", {}, {},
                                        true});
    return;
  }
  auto account = AccountFor(*launch);
  if (!account.ok()) {
    // Never started here; the job goes back to the queue (without using a retry), and the
    // account report just sent keeps it off this node.
    spdlog::warn("job {} attempt {}: not started: {}", launch->job_id, launch->attempt,
                 account.status().message());
    protocol::JobExited refused{
        launch->job_id, launch->attempt, 126, 0, account.status().message(), {}, {}, {}};
    refused.account_refused = true;
    ReportExit(key, refused);
    return;
  }
  // An attempt that runs only here gets CPUs of its own when enough are free (a gang's other
  // nodes are started by mpirun, which passes them the leader's environment: not pinned).
  std::vector<int> cpus;
  if (launch->hosts.empty()) {
    const nlohmann::json resources = launch->spec.is_object()
                                         ? launch->spec.value("resources", nlohmann::json::object())
                                         : nlohmann::json::object();
    const nlohmann::json per_rank = resources.is_object()
                                        ? resources.value("cpus_per_rank", nlohmann::json(1))
                                        : nlohmann::json(1);
    const int64_t cpus_per_rank =
        std::max<int64_t>(1, per_rank.is_number_integer() ? per_rank.get<int64_t>() : 1);
    cpus = cores_.Take(key, launch->ranks * cpus_per_rank);
  }
  auto run = JobRun::Start(
      options_.run, *launch, context_,
      [this](transport::Frames f) { SendToScheduler(std::move(f)); },
      [this](int64_t job_id, int64_t attempt, std::vector<std::string> lines) {
        Ship(job_id, attempt, std::move(lines));
      },
      [this](PendingUpload u) { uploader_.Enqueue(std::move(u)); }, clock_.MonotonicMs(), cpus,
      *account);
  if (!run.ok()) {
    cores_.Release(key);
    spdlog::error("job {} attempt {}: cannot start: {}", launch->job_id, launch->attempt,
                  run.status().ToString());
    ReportExit(key, protocol::JobExited{launch->job_id, launch->attempt, 127, 0,
                                        "worker could not start the job: " +
                                            run.status().message(), {}, {}, {}});
    return;
  }
  runs_[key] = std::move(run).value();
}

void Agent::OnRemoteExec(const transport::Frames& frames) {
  if (frames.size() < 2) return;
  const std::string& peer = frames[0];
  auto reply_error = [&](const Status& status) {
    transport::Frames reply = protocol::Encode(
        protocol::ErrorReply{StatusCodeName(status.code()), status.message(), {}});
    reply.insert(reply.begin(), peer);
    (void)launch_socket_->Send(reply);
  };
  auto envelope = protocol::DecodeEnvelope(frames[1]);
  if (!envelope.ok()) return reply_error(envelope.status());
  auto exec = protocol::DecodeBody<protocol::RemoteExec>(*envelope);
  if (!exec.ok()) return reply_error(exec.status());
  auto run = runs_.find({exec->job_id, exec->attempt});
  if (run == runs_.end() || !run->second->is_member()) {
    // The launch from the scheduler may simply not be here yet: kiln-rsh asks again.
    return reply_error(Status::Unavailable("attempt " + std::to_string(exec->attempt) +
                                           " of job " + std::to_string(exec->job_id) +
                                           " is not (yet) placed on this node"));
  }
  // Constant time: how much of a guess matched must not show in the reply time.
  if (exec->secret.empty() || !ConstantTimeEquals(exec->secret, run->second->launch_secret())) {
    spdlog::warn("refused a remote command for job {} attempt {}: wrong secret", exec->job_id,
                 exec->attempt);
    return reply_error(Status::PermissionDenied("wrong launch secret for this attempt"));
  }
  if (!run->second->ReadyForRemote()) {
    return reply_error(Status::Unavailable("still preparing (fetching the checkpoint)"));
  }
  Status started = run->second->StartRemote(exec->command, peer);
  if (!started.ok()) reply_error(started);
}

void Agent::OnKill(const Envelope& e) {
  auto kill = protocol::DecodeBody<protocol::KillJob>(e);
  if (!kill.ok()) return;
  auto it = runs_.find({kill->job_id, kill->attempt});
  if (it != runs_.end()) it->second->Kill(kill->reason, clock_.MonotonicMs());
}

void Agent::StopAll(const std::string& reason) {
  // The ranks save a checkpoint on SIGTERM; that checkpoint is uploaded and the exits reported
  // (and acknowledged) before the agent leaves, within a bound, so that the scheduler puts the
  // jobs back to resume from it instead of finding this node DOWN and failing them.
  shutting_down_ = true;
  for (auto& [key, run] : runs_) run->Kill(reason, clock_.MonotonicMs());
  const Millis start = clock_.MonotonicMs();
  const Millis stop_ranks_by = start + options_.run.kill_grace_ms + 2000;
  const Millis give_up_at = stop_ranks_by + kShutdownUploadWaitMs;
  while (clock_.MonotonicMs() < give_up_at &&
         (!runs_.empty() || !exits_waiting_for_uploads_.empty() || !unacked_exits_.empty() ||
          logs_.AnyUnacknowledged())) {
    if (!runs_.empty() && clock_.MonotonicMs() >= stop_ranks_by) break;
    Turn(50);
  }
  if (!runs_.empty() || !exits_waiting_for_uploads_.empty() || !unacked_exits_.empty()) {
    spdlog::warn("leaving with {} attempts still running, {} waiting for uploads and {} exits "
                 "not acknowledged after {} ms", runs_.size(), exits_waiting_for_uploads_.size(),
                 unacked_exits_.size(), clock_.MonotonicMs() - start);
  } else {
    spdlog::info("every attempt stopped, its checkpoint uploaded and its exit acknowledged in {} "
                 "ms", clock_.MonotonicMs() - start);
  }
  runs_.clear();  // destructors SIGKILL anything left
}

}  // namespace kiln::agent
