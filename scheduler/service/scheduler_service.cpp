#include "scheduler/service/scheduler_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <unordered_map>

#include "common/config.h"
#include "common/file_util.h"

namespace kiln::service {

using protocol::Envelope;

namespace {
constexpr Millis kLivenessCheckEveryMs = 250;
constexpr Millis kPassEveryMs = 1000;

}  // namespace

Result<transport::CurveKeyPair> EnsureSchedulerKeys(const std::string& state_dir) {
  KILN_RETURN_IF_ERROR(MakeDirs(state_dir));
  bool created = false;
  auto server = transport::LoadOrCreateKeyPair(state_dir + "/" + kServerKeyFile, &created);
  if (!server.ok()) return server.status();
  if (created) spdlog::info("created the scheduler keypair {}/{}", state_dir, kServerKeyFile);
  auto cluster = transport::LoadOrCreateKeyPair(state_dir + "/" + kWorkerClusterKeyFile, &created);
  if (!cluster.ok()) return cluster.status();
  const std::string pub = state_dir + "/" + kServerPublicKeyFile;
  auto existing = ReadFile(pub);
  if (!existing.ok() || *existing != server->public_key + "\n") {
    KILN_RETURN_IF_ERROR(WriteFileAtomic(pub, server->public_key + "\n", 0644));
  }
  return server;
}

Result<std::unique_ptr<SchedulerService>> SchedulerService::Create(const SchedulerOptions& options,
                                                                   const Clock& clock,
                                                                   transport::Context& context) {
  if (options.state_dir.empty()) return Status::InvalidArgument("--state-dir is required");
  auto keys = EnsureSchedulerKeys(options.state_dir);
  if (!keys.ok()) return keys.status();
  auto transport = BindZmqTransport(context, *keys, options.listen);
  if (!transport.ok()) return transport.status();
  spdlog::info("server public key {} (also in {}/{})", keys->public_key, options.state_dir,
               kServerPublicKeyFile);
  return Create(options, clock, std::move(transport).value());
}

Result<std::unique_ptr<SchedulerService>> SchedulerService::Create(
    const SchedulerOptions& options, const Clock& clock,
    std::unique_ptr<ServiceTransport> transport) {
  if (options.state_dir.empty()) return Status::InvalidArgument("--state-dir is required");
  KILN_RETURN_IF_ERROR(MakeDirs(options.state_dir));
  auto store = Store::Open(options.state_dir + "/kiln.db");
  if (!store.ok()) return store.status();
  auto keys = EnsureSchedulerKeys(options.state_dir);
  if (!keys.ok()) return keys.status();
  auto cluster = transport::LoadKeyPair(options.state_dir + "/" + kWorkerClusterKeyFile);
  if (!cluster.ok()) return cluster.status();
  KILN_RETURN_IF_ERROR(
      WriteFileAtomic(options.state_dir + "/endpoint", transport->endpoint() + "\n"));
  std::unique_ptr<SchedulerService> service(new SchedulerService(
      options, clock, std::move(store).value(), std::move(transport), cluster->public_key));
  service->RefreshWorkerKeys();
  service->RefreshUsers();
  KILN_RETURN_IF_ERROR(service->checkpoints_.Init());
  KILN_RETURN_IF_ERROR(service->Recover());
  return service;
}

SchedulerService::SchedulerService(SchedulerOptions options, const Clock& clock,
                                   std::unique_ptr<Store> store,
                                   std::unique_ptr<ServiceTransport> transport,
                                   std::string cluster_worker_key)
    : options_(std::move(options)),
      clock_(clock),
      store_(std::move(store)),
      checkpoints_(options_.state_dir + "/checkpoints"),
      uploads_(checkpoints_),
      transport_(std::move(transport)),
      cluster_worker_key_(std::move(cluster_worker_key)),
      monitor_(options_.worker_timeout_ms),
      ledger_(options_.fair_share_half_life_s),
      placements_(*store_),
      jobs_(*store_, options_.multi_node),
      services_(*store_) {
  DeclareMetrics();
}

SchedulerService::~SchedulerService() = default;

// After a restart: every node that was UP gets one timeout to register again, and the attempts
// the database says are running keep their slots until their worker reports otherwise.
Status SchedulerService::Recover() {
  auto nodes = store_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  const Millis now = clock_.MonotonicMs();
  for (const auto& n : *nodes) {
    Worker& w = workers_[n.name];
    w.record = n;
    w.up = false;  // until it registers again; its peer identity is unknown
    if (n.state == "UP") monitor_.Heard(n.name, now);
  }
  KILN_RETURN_IF_ERROR(RebuildFromStore());
  // Replicas report whether they are ready every second: until they have, none looks ready, and
  // a rollout in progress must not take that for failures.
  services_settle_until_ = now + 3000;
  // A node DOWN before the restart may still hold attempts: its agent stops them within a lease
  // of silence, which has lasted at least since this scheduler stopped; a full lease from now.
  for (auto& [name, w] : workers_) {
    if (w.record.state != "UP" && !placements_.On(name).empty()) {
      w.lease_ends_at = now + options_.worker_lease_ms;
    }
  }
  return Status::Ok();
}

Status SchedulerService::RebuildFromStore() {
  auto nodes = store_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  for (const auto& n : *nodes) {
    auto w = workers_.find(n.name);
    if (w == workers_.end()) continue;
    w->second.record.drained = n.drained;  // what admins change; liveness stays as seen
    w->second.record.drain_reason = n.drain_reason;
    w->second.record.labels = n.labels;
  }
  auto usage = store_->ListUsage();
  if (!usage.ok()) return usage.status();
  for (const auto& u : *usage) ledger_.Restore(u.user, {u.usage, u.as_of});
  jobs_.Clear();
  KILN_RETURN_IF_ERROR(services_.Load());
  KILN_RETURN_IF_ERROR(placements_.Load());
  std::set<AttemptKey> placed_attempts;
  for (const auto& [node, here] : placements_.all()) {
    for (const auto& [key, p] : here) placed_attempts.insert(key);
  }
  auto jobs = store_->ListJobs(false);
  if (!jobs.ok()) return jobs.status();
  int running = 0;
  for (const auto& j : *jobs) {
    SpecParseResult parsed = ParseTaskSpecOf(j);
    if (!parsed.ok()) {
      spdlog::error("job {}: stored spec no longer parses ({}); it is not scheduled", j.id,
                    SpecErrorStrings(parsed.errors).front());
      continue;
    }
    ActiveJob& tracked = jobs_.Track(j, parsed.spec);
    if (j.state != core::JobState::kRunning) continue;
    ++running;
    // A database written before placements were stored: rebuild the running attempt's from its
    // allocation (acknowledged, as it was running when the scheduler stopped). Otherwise a node
    // of the allocation without a placement is one whose part already ended (a gang member).
    if (placed_attempts.count({j.id, j.attempt}) > 0) continue;
    for (const auto& [node, share] : tracked.allocation) {
      Placement p;
      p.ranks = share.ranks;
      p.slots = share.ranks * std::max<int64_t>(1, parsed.spec.resources.cpus_per_rank);
      p.memory = share.ranks * parsed.spec.resources.memory_per_rank;
      p.gpu_ids = share.gpu_ids;
      p.acknowledged = true;
      KILN_RETURN_IF_ERROR(placements_.Put(node, {j.id, j.attempt}, p));
    }
  }
  // Requeued jobs still waiting for their old attempt's exit stay held until it comes.
  for (const auto& [node, here] : placements_.all()) {
    for (const auto& [key, p] : here) {
      ActiveJob* a = jobs_.Find(key.first);
      if (p.job_waits_for_exit && a != nullptr && a->state == core::JobState::kPending) {
        a->queued.held = true;
      }
    }
  }
  size_t placed = 0;
  for (const auto& [node, here] : placements_.all()) placed += here.size();
  spdlog::info("recovered {} unfinished jobs ({} running), {} placements and {} nodes",
               jobs->size(), running, placed, nodes->size());
  return Status::Ok();
}

void SchedulerService::Run(const std::atomic<bool>& stop,
                           const std::function<void()>& between_turns) {
  spdlog::info("listening on {}, state in {}", endpoint(), options_.state_dir);
  while (!stop.load()) {
    Turn(100);
    if (between_turns) between_turns();
  }
  spdlog::info("shutting down");
}

void SchedulerService::ApplySettings(const SchedulerOptions& fresh) {
  std::set<std::string> users;
  for (const auto& [user, w] : options_.user_weights) users.insert(user);
  for (const auto& [user, w] : fresh.user_weights) users.insert(user);
  auto weight_of = [](const SchedulerOptions& o, const std::string& user) {
    auto it = o.user_weights.find(user);
    return it == o.user_weights.end() ? 1.0 : it->second;
  };
  int changed = 0;
  for (const auto& user : users) {
    const double before = weight_of(options_, user), after = weight_of(fresh, user);
    if (before != after) {
      spdlog::info("reload: user-weight {} {} -> {}", user, before, after);
      ++changed;
    }
  }
  options_.user_weights = fresh.user_weights;
  const std::pair<const char*, Millis core::RecordRetention::*> keeps[] = {
      {"keep-logs", &core::RecordRetention::logs_ms},
      {"keep-events", &core::RecordRetention::events_ms},
      {"keep-audit", &core::RecordRetention::audit_ms},
      {"keep-uploads", &core::RecordRetention::uploads_ms}};
  for (const auto& [name, field] : keeps) {
    if (options_.retention.*field != fresh.retention.*field) {
      spdlog::info("reload: {} {} s -> {} s", name, options_.retention.*field / 1000,
                   fresh.retention.*field / 1000);
      options_.retention.*field = fresh.retention.*field;
      next_prune_at_ = 0;  // the new policy applies at the next turn
      ++changed;
    }
  }
  if (changed > 0) dirty_ = true;  // the next pass uses the new weights
  std::vector<std::string> restart;
  if (fresh.listen != options_.listen) restart.push_back("listen");
  if (fresh.state_dir != options_.state_dir) restart.push_back("state-dir");
  if (fresh.worker_timeout_ms != options_.worker_timeout_ms) restart.push_back("worker-timeout");
  if (fresh.worker_lease_ms != options_.worker_lease_ms) restart.push_back("worker-lease");
  if (fresh.private_jobs != options_.private_jobs) restart.push_back("private-jobs");
  if (fresh.backfill != options_.backfill) restart.push_back("no-backfill");
  if (fresh.multi_node != options_.multi_node) restart.push_back("single-node-gangs");
  if (fresh.usage_unit != options_.usage_unit) restart.push_back("usage-unit");
  if (fresh.fair_share_half_life_s != options_.fair_share_half_life_s) {
    restart.push_back("fair-share-half-life");
  }
  for (const auto& name : restart) {
    spdlog::warn("reload: {} changed, but takes effect only when the scheduler restarts", name);
  }
  spdlog::info("reload: {} setting(s) changed", changed);
}

void SchedulerService::Turn(int wait_ms) {
  transport_->Wait(wait_ms,
                   [this](const transport::ZapRequest& r) { return DecideConnection(r); });
  if (read_only_ && !TryLeaveReadOnly()) return ReadOnlyTurn();
  CommitTurn([this] {
    NoticeAdminChanges();
    ForEachWaitingMessage([this](const transport::Frames& frames, const std::string& connection) {
      HandleOne(frames, connection);
      ThrowIfTransactionLost();
    });
    RunTimersAndPass();
  });
  if (clock_.MonotonicMs() >= next_metrics_at_) PublishMetrics();
}

void SchedulerService::ForEachWaitingMessage(
    const std::function<void(const transport::Frames&, const std::string&)>& handle) {
  std::string connection;
  for (int i = 0; i < kMaxMessagesPerTurn && outbox_bytes_ < kMaxOutboxBytesPerTurn; ++i) {
    auto frames = transport_->Receive(&connection);
    if (!frames) break;
    handle(*frames, connection);
  }
}

void SchedulerService::CommitTurn(const std::function<void()>& body) {
  Status begun = store_->Begin();
  if (!begun.ok()) {
    spdlog::error("cannot open transaction: {}", begun.ToString());
    return;
  }
  turn_requests_.clear();
  Status committed;
  try {
    body();
    ThrowIfTransactionLost();
    committed = store_->Commit();
  } catch (const StoreWriteFailed& failed) {
    committed = failed.status();
  }
  // Nothing of a turn that did not commit may be acknowledged: it is undone, and its requests
  // are answered with errors (EnterReadOnly).
  if (!committed.ok()) return EnterReadOnly(committed);
  RemoveFilesAfterCommit();
  SendOutbox();
}

void SchedulerService::RolledBackTurn(const std::function<void()>& body) {
  if (!store_->Begin().ok()) return;
  try {
    body();
  } catch (const StoreWriteFailed& failed) {
    spdlog::warn("a read failed in read-only mode: {}", failed.status().ToString());
  }
  (void)store_->Rollback();  // whatever a read wrote (audit rows) cannot be kept
  SendOutbox();
}

void SchedulerService::ThrowIfTransactionLost() {
  if (store_->TransactionLost()) {
    throw StoreWriteFailed(Status::IoError(
        "the database dropped this turn's transaction after a failed write (a full disk?)"));
  }
}

void SchedulerService::RunTimersAndPass() {
  const Millis now = clock_.MonotonicMs();
  if (now >= next_liveness_check_at_) {
    next_liveness_check_at_ = now + kLivenessCheckEveryMs;
    CheckSilentWorkers();
  }
  if (now >= next_heartbeat_at_) {
    next_heartbeat_at_ = now + kHeartbeatIntervalMs;
    HeartbeatWorkers();
  }
  if (now >= next_prune_at_) PruneOldRecords();  // sets next_prune_at_
  ReconcileServices();  // may start or stop replica jobs, for this turn's pass
  const bool worth_a_pass = dirty_ || (submitted_ && capacity_left_);
  if ((worth_a_pass && now >= pass_allowed_at_) || now >= next_pass_at_) {
    dirty_ = false;
    submitted_ = false;
    next_pass_at_ = now + kPassEveryMs;
    const auto pass_started = std::chrono::steady_clock::now();
    SchedulingPass();
    metrics_.Observe(
        "kiln_scheduling_pass_seconds", {},
        std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_started).count());
    // A pass over a long queue takes a while: leave the loop at least 3/4 of its time for
    // messages. Short queues pass in well under a millisecond, so an idle cluster still places
    // a job in the turn that received it.
    const Millis took = clock_.MonotonicMs() - now;
    pass_allowed_at_ = now + 4 * took;
  }
}

void SchedulerService::SendOutbox() {
  for (auto& [peer, frames] : outbox_) {
    frames.insert(frames.begin(), peer);
    const bool to_worker = node_of_peer_.count(frames[0]) != 0;
    Status sent = transport_->Send(frames, to_worker);
    if (!sent.ok()) spdlog::debug("reply dropped: {}", sent.ToString());
  }
  outbox_.clear();
  outbox_bytes_ = 0;
}

void SchedulerService::HandleMessage(const transport::Frames& frames,
                                     const std::string& connection) {
  if (read_only_ && !TryLeaveReadOnly()) {
    return RolledBackTurn([&] { ServeReadOnly(frames, connection); });
  }
  CommitTurn([&] { HandleOne(frames, connection); });
}

void SchedulerService::HandleOne(const transport::Frames& frames, const std::string& connection) {
  const size_t outbox_mark = outbox_.size();
  const size_t deleted_mark = deleted_checkpoints_.size();
  Status opened = store_->Savepoint();
  if (!opened.ok()) DieOnStoreError(opened);
  const int64_t changes_before = store_->TotalChanges();
  Request req(frames, core::KeyOfConnection(connection));
  std::optional<std::string> internal;
  const auto started = std::chrono::steady_clock::now();
  try {
    Dispatch(req);
  } catch (const StoreWriteFailed&) {
    throw;  // the whole turn is undone
  } catch (const std::exception& e) {
    // A handler bug must not take the daemon down with it: the message is undone and logged.
    internal = e.what();
    spdlog::error("internal error handling a message: {}", e.what());
  }
  if (req.failed || internal) {
    // Keep only the error reply: what the handler wrote, queued and changed in memory goes.
    std::optional<std::pair<std::string, transport::Frames>> error_reply;
    if (!internal && outbox_.size() > outbox_mark) error_reply = outbox_.back();
    outbox_.resize(outbox_mark);
    deleted_checkpoints_.resize(deleted_mark);
    const bool wrote = store_->TotalChanges() != changes_before;
    Status undone = store_->RollbackToSavepoint();
    if (!undone.ok()) DieOnStoreError(undone);
    if (wrote || internal) {
      spdlog::warn("a failed message's writes were rolled back; rebuilding state from the database");
      Status rebuilt = RebuildFromStore();
      if (!rebuilt.ok()) DieOnStoreError(rebuilt);
      dirty_ = true;
    }
    if (error_reply) outbox_.push_back(std::move(*error_reply));
    if (internal && !req.peer.empty()) {
      ReplyError(req, Status::Internal("the scheduler failed to handle this request; nothing of "
                                       "it was applied (see the scheduler's log)"));
    }
  }
  for (const auto& record : req.audit) {
    if (record.outcome == "ok" && (req.failed || internal)) continue;
    Status saved = store_->AddAudit(record);
    if (!saved.ok()) spdlog::error("cannot write the audit table: {}", saved.ToString());
  }
  Status released = store_->ReleaseSavepoint();
  if (!released.ok()) DieOnStoreError(released);
  // By type only when the type is one the scheduler knows: no label a sender can invent.
  const metrics::Labels type = {{"type", req.known_type ? req.envelope.type : "other"}};
  metrics_.Add("kiln_requests_total", type);
  metrics_.Observe(
      "kiln_request_seconds", type,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

const SchedulerService::Route* SchedulerService::FindRoute(const std::string& type) {
  static const std::unordered_map<std::string, Route> kRoutes = {
      {protocol::WhoAmIRequest::kType, {false, true, &SchedulerService::OnWhoAmI}},
      {protocol::SubmitRequest::kType, {false, false, &SchedulerService::OnSubmit}},
      {protocol::QueueRequest::kType, {false, true, &SchedulerService::OnQueue}},
      {protocol::ShowRequest::kType, {false, true, &SchedulerService::OnShow}},
      {protocol::MetricsHistoryRequest::kType, {false, true, &SchedulerService::OnMetricsHistory}},
      {protocol::CancelRequest::kType, {false, false, &SchedulerService::OnCancel}},
      {protocol::LogsRequest::kType, {false, true, &SchedulerService::OnLogs}},
      {protocol::NodesRequest::kType, {false, true, &SchedulerService::OnNodes}},
      {protocol::CheckpointsRequest::kType, {false, true, &SchedulerService::OnCheckpoints}},
      {protocol::JobAdminRequest::kType, {false, false, &SchedulerService::OnJobAdmin}},
      {protocol::NodeAdminRequest::kType, {false, false, &SchedulerService::OnNodeAdmin}},
      {protocol::DeployRequest::kType, {false, false, &SchedulerService::OnDeploy}},
      {protocol::UndeployRequest::kType, {false, false, &SchedulerService::OnUndeploy}},
      {protocol::ServicesRequest::kType, {false, true, &SchedulerService::OnServices}},
      {protocol::ServiceGrantRequest::kType, {false, false, &SchedulerService::OnServiceGrant}},
      {protocol::CheckpointRead::kType, {false, true, &SchedulerService::OnCheckpointRead}},
      {protocol::CheckpointRemove::kType, {false, false, &SchedulerService::OnCheckpointRemove}},
      {protocol::RegisterWorker::kType, {true, false, &SchedulerService::OnRegister}},
      {protocol::Heartbeat::kType, {true, false, &SchedulerService::OnHeartbeat}},
      {protocol::AccountReport::kType, {true, false, &SchedulerService::OnAccountReport}},
      {protocol::JobStarted::kType, {true, false, &SchedulerService::OnJobStarted}},
      {protocol::LogBatch::kType, {true, false, &SchedulerService::OnLog}},
      {protocol::ProgressReport::kType, {true, false, &SchedulerService::OnProgress}},
      {protocol::CheckpointBegin::kType, {true, false, &SchedulerService::OnCheckpointBegin}},
      {protocol::CheckpointChunk::kType, {true, false, &SchedulerService::OnCheckpointChunk}},
      {protocol::JobExited::kType, {true, false, &SchedulerService::OnJobExited}},
  };
  auto it = kRoutes.find(type);
  return it == kRoutes.end() ? nullptr : &it->second;
}

void SchedulerService::Dispatch(Request& req) {
  // ROUTER frames: [peer identity][envelope][binary...]
  if (req.frames.size() < 2) return;
  req.peer = req.frames[0];
  auto envelope = protocol::DecodeEnvelope(req.frames[1]);
  if (!envelope.ok()) {
    spdlog::warn("rejected malformed message: {}", envelope.status().message());
    return ReplyError(req, envelope.status());
  }
  req.envelope = std::move(envelope).value();
  const protocol::Envelope& e = req.envelope;
  const Route* route = FindRoute(e.type);
  if (route == nullptr) {
    return ReplyError(req, Status::InvalidArgument("message type \"" + e.type +
                                                   "\" is not accepted by the scheduler"));
  }
  req.known_type = true;
  if (!route->from_worker) turn_requests_.push_back({req.peer, e.id});
  if (route->from_worker) {
    if (!AdmitWorkerMessage(req)) return;
    // Any message from a worker shows it is alive, not only heartbeats: after this loop stalled
    // (a slow fsync), its heartbeat may still wait behind hundreds of uploads on the connection.
    if (auto name = node_of_peer_.find(req.peer); name != node_of_peer_.end()) {
      monitor_.Heard(name->second, clock_.MonotonicMs());
    }
  } else if (e.type == protocol::CheckpointRead::kType && e.auth.empty() &&
             IsAdmittedWorkerKey(req.connection_key)) {
    // A worker fetching the checkpoint an attempt placed on it resumes from.
    req.caller = {"worker", false, true};
  } else if (!AuthenticateClient(req)) {
    return;
  }
  (this->*route->handle)(req);
}

void SchedulerService::ReplyError(Request& req, const Status& status,
                                  std::vector<std::string> errors) {
  req.failed = true;
  Reply(req,
        protocol::ErrorReply{StatusCodeName(status.code()), status.message(), std::move(errors)});
}

}  // namespace kiln::service
