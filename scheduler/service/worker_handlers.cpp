// Messages from worker agents. A worker is known by the ROUTER identity it registered with;
// anything from an unknown identity is answered with `reregister`, never trusted.
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/quantities.h"
#include "common/rank_failure.h"
#include "common/shell_quote.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using protocol::Envelope;

SchedulerService::Worker* SchedulerService::KnownWorker(const std::string& peer) {
  auto name = node_of_peer_.find(peer);
  if (name != node_of_peer_.end()) {
    auto w = workers_.find(name->second);
    if (w != workers_.end() && w->second.up && w->second.peer == peer) return &w->second;
  }
  Send(peer, protocol::Reregister{"scheduler does not know this worker; register again"});
  return nullptr;
}

void SchedulerService::OnRegister(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::RegisterWorker, r);
  if (r.name.empty() || r.name.size() > 128 || r.slots < 1 || r.gpus < 0) {
    return ReplyError(
        req, Status::InvalidArgument("register: name must be 1-128 characters, slots >= 1, "
                                     "gpus >= 0"));
  }
  if (r.labels.size() > 64) {
    return ReplyError(req, Status::InvalidArgument("register: at most 64 labels"));
  }
  // A key on the allow-list speaks for the node it was admitted as, and no other; the shared
  // cluster key may register any name.
  if (auto bound = admitted_worker_keys_.find(req.connection_key);
      bound != admitted_worker_keys_.end() && !bound->second.empty() && bound->second != r.name) {
    spdlog::warn("refused register as {}: key {} was admitted as node {}", r.name,
                 req.connection_key, bound->second);
    return ReplyError(
        req, Status::PermissionDenied(
                 "this worker's key was admitted as node " + bound->second + ", not " + r.name +
                 "; to rename it run: " +
                 ShellCommand({"kiln-scheduler", "--state-dir", options_.state_dir, "worker",
                               "allow", "--name", r.name, "--", req.connection_key})));
  }
  const Millis now = clock_.WallMs();
  Worker& w = workers_[r.name];
  w.leaving = false;
  if (!w.peer.empty() && w.peer != req.peer) node_of_peer_.erase(w.peer);
  w.peer = req.peer;
  w.up = true;
  const bool drained = w.record.drained;  // an admin's drain outlives re-registration
  const std::string drain_reason = w.record.drain_reason;
  w.record = {r.name, r.slots, r.memory_bytes, r.gpus, "UP", now, now, {}, false, ""};
  w.record.labels.clear();
  for (const auto& l : r.labels) {  // account labels are the scheduler's to give (accounts.h)
    if (!core::IsInternalLabel(l)) w.record.labels.push_back(l);
  }
  std::sort(w.record.labels.begin(), w.record.labels.end());
  w.accounts = core::NodeAccounts{r.agent_uid, r.agent_account.value_or(""), {}};
  if (r.accounts) SetAccountUids(w, *r.accounts);
  RefreshPolicyLabels(w);
  w.record.drained = drained;
  w.record.drain_reason = drain_reason;
  w.address = r.address;
  w.launch_endpoint = r.launch_endpoint;
  w.public_key = req.connection_key;
  w.lease_ends_at = 0;  // back within its lease: what it still runs goes on (Reconcile)
  node_of_peer_[req.peer] = r.name;
  monitor_.Heard(r.name, clock_.MonotonicMs());
  Status saved = store_->UpsertNode(w.record);
  if (!saved.ok()) return ReplyError(req, saved);

  // What was sent to this node before may have been lost with its connection: a replica's
  // tokens go again (PushServeTokens).
  for (const auto& [key, placement] : placements_.On(w.record.name))
    serve_tokens_sent_.erase(key.first);
  Reconcile(w, r.running);
  spdlog::info("worker {} registered: {} slots, {} GPUs, {} memory, {} running attempts", r.name,
               r.slots, r.gpus, FormatSize(r.memory_bytes), r.running.size());
  dirty_ = true;
  Reply(req, protocol::RegisterAck{
                 r.name, kHeartbeatIntervalMs, options_.worker_lease_ms,
                 std::vector<std::string>(mapped_accounts_.begin(), mapped_accounts_.end())});
}

void SchedulerService::OnHeartbeat(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::Heartbeat, hb);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  monitor_.Heard(w->record.name, clock_.MonotonicMs());
  w->record.last_seen_at = clock_.WallMs();
  // kiln nodes shows the in-memory time; the row is refreshed now and then so that it stays
  // close after a scheduler restart without a write per heartbeat.
  if (w->record.last_seen_at - w->last_seen_saved_at >= kLastSeenSaveEveryMs) {
    w->last_seen_saved_at = w->record.last_seen_at;
    Status saved = store_->UpsertNode(w->record);
    if (!saved.ok()) spdlog::warn("node {}: {}", w->record.name, saved.ToString());
  }
  Reconcile(*w, hb.running);
}

void SchedulerService::Reconcile(Worker& worker, const std::vector<protocol::RunningAttempt>& reported) {
  // A launch may still be on its way when the worker reports: give it this long to show up.
  constexpr Millis kLaunchGraceMs = 5000;
  const std::string name = worker.record.name;
  const Millis now = clock_.MonotonicMs();
  auto is_reported = [&](const AttemptKey& key) {
    return std::find(reported.begin(), reported.end(),
                     protocol::RunningAttempt{key.first, key.second}) != reported.end();
  };
  std::vector<std::pair<AttemptKey, Placement>> here(placements_.On(name).begin(),
                                                     placements_.On(name).end());
  for (const auto& [key, attempt] : here) {
    if (is_reported(key)) {
      Status acknowledged = placements_.Acknowledge(name, key);
      if (!acknowledged.ok()) DieOnStoreError(acknowledged);
      continue;
    }
    if (attempt.launch && !attempt.acknowledged && !attempt.stop_requested &&
        attempt.launch_sends < kMaxLaunchSends) {
      // Never acknowledged: the launch (or the worker's first report of it) was lost, e.g. in a
      // reconnect or a scheduler restart. The agent ignores a duplicate launch, so sending it
      // again is safe.
      if (now - attempt.launch_sent_at >= kLaunchResendMs || attempt.launch_sends == 0) {
        Send(worker.peer, *attempt.launch);
        placements_.NoteLaunchSent(name, key, now);
        serve_tokens_sent_.erase(key.first);  // its tokens are those of the first send: again
        spdlog::warn("job {} attempt {}: {} has not acknowledged its launch; sent again ({} of {})",
                     key.first, key.second, name, attempt.launch_sends + 1, kMaxLaunchSends);
      }
      continue;
    }
    if (attempt.launched_at > 0 && now - attempt.launched_at < kLaunchGraceMs) continue;
    const bool key_acknowledged = attempt.acknowledged || !attempt.launch;
    EndPlacement(name, key);
    auto found = store_->GetJob(key.first);
    if (!found.ok() || !found->has_value()) continue;
    JobRecord job = **found;
    bool ran_here = job.node == name;
    for (const auto& entry : job.allocation) ran_here = ran_here || entry.value("node", "") == name;
    if (job.state == core::JobState::kRunning && job.attempt == key.second && ran_here) {
      StopAttempt(job, "attempt lost on " + name);
      FailAttempt(job, "worker " + name + " is not running it (the agent restarted" +
                           std::string(key_acknowledged ? ")"
                                                        : "; it never acknowledged the launch, "
                                                          "sent " +
                                                              std::to_string(kMaxLaunchSends) +
                                                              " times)"));
    }
  }
  for (const auto& a : reported) {
    const AttemptKey key{a.job_id, a.attempt};
    if (const Placement* p = placements_.Find(name, key)) {
      if (p->stop_requested) {
        Send(worker.peer, protocol::KillJob{a.job_id, a.attempt, "attempt is no longer wanted"});
      }
      continue;
    }
    // Running there, but not an attempt we want: stop it, and count what it holds until it is
    // gone (its share of the attempt, as the job's records tell).
    auto found = store_->GetJob(a.job_id);
    Placement unwanted;
    if (found.ok() && found->has_value()) unwanted = HoldingsOf(**found, a.attempt, name);
    unwanted.launched_at = now;
    unwanted.stop_requested = true;
    Status put = placements_.Put(name, key, unwanted);
    if (!put.ok()) DieOnStoreError(put);
    Send(worker.peer, protocol::KillJob{a.job_id, a.attempt, "attempt is no longer running"});
    spdlog::warn("worker {} runs job {} attempt {}, which is no longer wanted: stopping it", name,
                 a.job_id, a.attempt);
  }
}

nlohmann::json SchedulerService::RecordedNodes(int64_t job_id, int64_t attempt) {
  auto attempts = store_->Attempts(job_id);
  if (attempts.ok()) {
    for (const auto& a : *attempts) {
      if (a.attempt == attempt && a.nodes.is_array()) return a.nodes;
    }
  }
  return nlohmann::json::array();
}

Placement SchedulerService::HoldingsOf(const JobRecord& job, int64_t attempt,
                                       const std::string& node) {
  Placement p;
  JobSpec spec;
  SpecParseResult parsed = ParseJobSpec(job.spec);
  if (parsed.ok()) spec = parsed.spec;
  // Where the attempt was placed; when no record says (an attempt id the scheduler never made),
  // all of the job's ranks and GPUs, so that nothing it may hold is handed out twice.
  p.ranks = job.ranks;
  for (int g = 0; g < job.ranks * job.gpus_per_rank && g < 64; ++g) p.gpu_ids.push_back(g);
  for (const auto& share : RecordedNodes(job.id, attempt)) {
    if (share.value("node", "") != node) continue;
    p.ranks = share.value("ranks", int64_t{0});
    p.gpu_ids = share.value("gpu_ids", std::vector<int>{});
  }
  p.slots = p.ranks * std::max<int64_t>(1, spec.resources.cpus_per_rank);
  p.memory = p.ranks * spec.resources.memory_per_rank;
  return p;
}

void SchedulerService::OnJobStarted(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::JobStarted, m);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  spdlog::info("job {} attempt {} started on {} (mpirun pid {})", m.job_id, m.attempt,
               w->record.name, m.pid);
  Status acknowledged = placements_.Acknowledge(w->record.name, {m.job_id, m.attempt});
  if (!acknowledged.ok()) DieOnStoreError(acknowledged);
}

bool SchedulerService::PlacedOn(const JobRecord& job, int64_t attempt,
                                const std::string& node) const {
  if (placements_.Has(node, {job.id, attempt})) return true;
  if (job.attempt != attempt) return false;
  for (const auto& share : job.allocation) {
    if (share.value("node", "") == node) return true;
  }
  return false;
}

void SchedulerService::OnLog(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::LogBatch, m);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  const std::string& node = w->record.name;
  auto job = store_->GetJob(m.job_id);
  if (!job.ok() || !job->has_value()) return;
  // Only output of an attempt placed on this node is stored: while it runs there, or later (the
  // rest of its output, resent after the attempt ended).
  bool ran_here = PlacedOn(**job, m.attempt, node);
  if (!ran_here && m.first_line) {
    for (const auto& share : RecordedNodes(m.job_id, m.attempt)) {
      ran_here = ran_here || share.value("node", "") == node;
    }
  }
  if (!m.first_line) {  // an older worker: fire and forget
    if (!ran_here) return;
    Status s = store_->AppendLogs(m.job_id, m.attempt, clock_.WallMs(), m.lines);
    if (!s.ok()) spdlog::error("cannot store logs of job {}: {}", m.job_id, s.ToString());
    return;
  }
  const int64_t first = *m.first_line;
  const int64_t batch_end = first + static_cast<int64_t>(m.lines.size());
  if (!ran_here) {  // not this node's to report: acknowledged (so it stops), never stored
    return Send(req.peer, protocol::LogAck{m.job_id, m.attempt, batch_end, false});
  }
  auto cursor = store_->LogCursor(m.job_id, m.attempt, node);
  if (!cursor.ok()) return ReplyError(req, cursor.status());
  int64_t next = *cursor;
  std::vector<std::string> lines;
  if (first > next && m.oldest_line.value_or(0) > next) {
    // Lines the worker had to drop (its buffer for this attempt was full): say so, in their place.
    const int64_t lost = std::min(first, *m.oldest_line) - next;
    lines.push_back("[kiln-worker] " + std::to_string(lost) + " lines of output were lost: more "
                    "than the worker buffers waited for the scheduler (all of them are in "
                    "output.log in the attempt's run dir on " + node + ")");
    next += lost;
  }
  if (first > next) {  // a gap: earlier lines were lost on the way; ask for them again
    return Send(req.peer, protocol::LogAck{m.job_id, m.attempt, next, true});
  }
  for (int64_t n = std::max(first, next); n < batch_end; ++n) {
    lines.push_back(std::move(m.lines[static_cast<size_t>(n - first)]));  // duplicates skipped
  }
  next = std::max(next, batch_end);
  if (!lines.empty()) {
    Status s = store_->AppendLogs(m.job_id, m.attempt, clock_.WallMs(), lines);
    if (!s.ok()) return ReplyError(req, s);
    Status saved = store_->SetLogCursor(m.job_id, m.attempt, node, next);
    if (!saved.ok()) return ReplyError(req, saved);
  }
  Send(req.peer, protocol::LogAck{m.job_id, m.attempt, next, false});
}

void SchedulerService::OnProgress(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::ProgressReport, m);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  if (!m.report.is_object()) return;
  // Frequent: decided from memory (the job's attempt, placed on this node) and merged in one
  // column, so that a report neither reads nor parses nor rewrites the job's row.
  ActiveJob* active = jobs_.Find(m.job_id);
  if (active == nullptr || active->state != core::JobState::kRunning ||
      active->attempt != m.attempt) {
    return;
  }
  if (!placements_.Has(w->record.name, {m.job_id, m.attempt})) return;
  // Merged, so an epoch-end report (test accuracy) is not erased by the next step report.
  auto merged = store_->MergeJobProgress(m.job_id, m.attempt, m.report);
  if (!merged.ok()) {
    spdlog::error("cannot store progress of job {}: {}", m.job_id, merged.status().ToString());
    return;
  }
  if (auto serve = m.report.find("serve"); serve != m.report.end() && !active->service.empty()) {
    NoteServeReport(*active, m.job_id, *serve,
                    w->address);  // a replica's: no training curve to keep
    return;
  }
  NoteProgressRate(*active, m.report);
  RecordMetricHistory(*active, m.report);
  if (active->array_job > 0) NoteTrialReport(*active, m.report);  // may end it: last
}

void SchedulerService::OnJobExited(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::JobExited, m);
  // What the agent says goes into reasons that users read in a terminal: one bounded line.
  if (m.rank_error) m.rank_error = FirstErrorLine(*m.rank_error);
  m.reason = FirstErrorLine(m.reason);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  Send(req.peer, protocol::ExitAck{m.job_id, m.attempt});  // stop repeating it, whatever follows
  auto found = store_->GetJob(m.job_id);
  if (!found.ok() || !found->has_value()) return;
  JobRecord job = **found;
  // Only a node the attempt was placed on may end it.
  if (!PlacedOn(job, m.attempt, w->record.name)) return;
  // A requeued job waiting for this exit is released: the leader reports after its uploads, so
  // the checkpoint saved on the way out is registered by now.
  EndPlacement(w->record.name, {m.job_id, m.attempt});
  dirty_ = true;
  const int64_t exit_code = m.signal != 0 ? 128 + m.signal : m.exit_code;
  // In a gang on several nodes the leader (first node) runs mpirun, and its exit decides the
  // attempt. A member's MPI daemon ending well is the normal end; ending badly fails the gang.
  const bool member = job.attempt == m.attempt && job.allocation.size() > 1 &&
                      job.node != w->record.name;
  // mpirun's exit code is the leader's (the first node of the attempt), also when it arrives
  // after the job moved on; a member's daemon exit is not.
  bool leader = !member;
  if (job.attempt != m.attempt) {
    const nlohmann::json nodes = RecordedNodes(job.id, m.attempt);
    leader = !nodes.empty() && nodes[0].value("node", "") == w->record.name;
  }
  if (leader) {
    // A gang that stopped on SIGTERM with its checkpoint saved says so beside the stop's reason.
    const bool graceful = m.reason.rfind("stopped on SIGTERM", 0) == 0;
    Status noted =
        store_->SetAttemptExitCode(m.job_id, m.attempt, exit_code, graceful ? m.reason : "");
    if (!noted.ok()) spdlog::error("job {}: {}", m.job_id, noted.ToString());
  }
  const bool account_refused = m.account_refused.value_or(false);
  if (m.requeue.value_or(false) && !account_refused) {
    w->leaving = true;  // its agent is shutting down: nothing new there until it registers again
    dirty_ = true;
  }
  if (job.state != core::JobState::kRunning || job.attempt != m.attempt) return;  // already decided
  if (account_refused && job.requeues < kMaxRequeues) {
    // Never started: the node's account report (sent before this exit) keeps the job off it.
    RequeueAttempt(job, "requeued: " + m.reason);
    return;
  }
  const bool permanent = m.permanent.value_or(false);
  // The worker is shutting down: the job did not fail (a stop on SIGTERM, or a launch refused on
  // the way out), so it goes back to the queue without using a retry, a bounded number of times.
  const bool stopped_for_shutdown =
      m.requeue.value_or(false) && !permanent && m.signal == 0 &&
      (m.exit_code == kStoppedExitCode || m.exit_code == 127) && job.requeues < kMaxRequeues;
  if (stopped_for_shutdown) {
    // The job waits for the attempt's other nodes (the leader's exit brings the checkpoint).
    RequeueAttempt(job,
                   "requeued: worker " + w->record.name + " shut down (" +
                       (m.reason.empty() ? "stopped" : m.reason) + ")");
    return;
  }
  if (member) {
    if (m.exit_code == 0 && m.signal == 0) return;
    const std::string why = m.rank_error ? *m.rank_error
                                         : "node " + w->record.name + ": " + m.reason +
                                               " (exit code " + std::to_string(exit_code) + ")";
    StopAttempt(job, why);
    FailAttempt(job, why, permanent);
    return;
  }
  job.exit_code = m.exit_code;
  // The leader of a gang on several nodes is done: whatever the other nodes still run of this
  // attempt (a member still fetching, or waiting for a daemon that will never come) stops now.
  if (job.allocation.size() > 1) StopAttempt(job, "the leader's mpirun exited");
  if (m.exit_code == 0 && m.signal == 0) {
    Status s = Transition(job, core::JobEvent::kSucceeded, "all ranks exited 0");
    if (!s.ok()) spdlog::error("job {}: {}", job.id, s.ToString());
    spdlog::info("job {} completed", job.id);
    return;
  }
  // The failing rank's own error says what went wrong; mpirun's exit code only that it did.
  std::string reason = m.signal != 0 ? "mpirun killed by signal " + std::to_string(m.signal)
                                     : "mpirun exited with code " + std::to_string(m.exit_code);
  if (!m.reason.empty()) reason += ": " + m.reason;
  if (m.rank_error) reason = *m.rank_error;
  // A gang whose member node went silent fails on the leader first (mpirun loses that node's
  // daemon): the silent node is the cause.
  std::string down;
  for (const auto& share : job.allocation) {
    const std::string node = share.value("node", "");
    auto other = workers_.find(node);
    if (node != w->record.name && other != workers_.end() && !other->second.up) {
      down += (down.empty() ? "" : ", ") + node;
    }
  }
  if (!down.empty()) reason = "worker " + down + " is DOWN (" + reason + ")";
  FailAttempt(job, reason, permanent);
}

}  // namespace kiln::service
