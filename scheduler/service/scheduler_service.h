// The scheduler daemon's core: one thread runs Run(), which owns every piece of state below.
//
// One loop turn:
//   1. wait for messages on the ROUTER socket (at most until the next timer);
//   2. open one transaction, handle every waiting message (handlers queue replies in the outbox),
//      run due timers (silent-worker detection, heartbeats to workers), run a scheduling pass if
//      anything changed;
//   3. commit, then send the outbox. Nothing is acknowledged before it is durable (group commit).
//
// Worker protocol (Paranoid Pirate style):
//   1. worker -> register{name, slots, memory, gpus, running attempts}; scheduler reconciles the
//      attempts it believes run there, replies register_ack;
//   2. both sides heartbeat every second; a worker silent for the timeout is DOWN and its running
//      attempts fail; a worker that hears nothing reconnects and registers again;
//   3. scheduler -> launch / kill; worker -> job_started, log, progress, checkpoint, job_exited
//      (repeated until exit_ack).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/job_spec.h"
#include "common/metrics/registry.h"
#include "common/protocol/codec.h"
#include "scheduler/core/access_policy.h"
#include "scheduler/core/accounts.h"
#include "scheduler/core/fair_share.h"
#include "scheduler/core/heartbeat_monitor.h"
#include "scheduler/core/record_retention.h"
#include "scheduler/core/scheduling_policy.h"
#include "scheduler/service/checkpoint_store.h"
#include "scheduler/service/job_table.h"
#include "scheduler/service/job_views.h"
#include "scheduler/service/placements.h"
#include "scheduler/service/request.h"
#include "scheduler/service/scheduler_options.h"
#include "scheduler/service/service_table.h"
#include "scheduler/service/service_transport.h"
#include "scheduler/service/store.h"
#include "scheduler/service/upload_registry.h"

namespace kiln::service {

class SchedulerService {
 public:
  // Opens the state dir (database, checkpoint blobs) and binds the socket. The bound endpoint is
  // also written to <state_dir>/endpoint so local tools and tests can find an ephemeral port.
  static Result<std::unique_ptr<SchedulerService>> Create(const SchedulerOptions& options,
                                                          const Clock& clock,
                                                          transport::Context& context);
  // The same over any transport: the deterministic harness's in-memory one, for tests.
  static Result<std::unique_ptr<SchedulerService>> Create(
      const SchedulerOptions& options, const Clock& clock,
      std::unique_ptr<ServiceTransport> transport);
  ~SchedulerService();

  const std::string& endpoint() const { return transport_->endpoint(); }
  // Runs loop turns until `stop` becomes true; `between_turns`, when given, runs on the loop's
  // thread after each turn (e.g. to apply a SIGHUP's reload with ApplySettings).
  void Run(const std::atomic<bool>& stop, const std::function<void()>& between_turns = {});
  // Takes from `fresh` what can change while running (user weights, retention) and logs each
  // change; settings that need a restart are named in a warning when they differ.
  void ApplySettings(const SchedulerOptions& fresh);
  // One turn, waiting at most wait_ms for input. Exposed for tests.
  void Turn(int wait_ms);
  // Receives the metrics text (Prometheus exposition, metrics.cpp) every kMetricsEveryMs, on
  // the loop's thread; an HTTP server hands it out.
  void SetMetricsSink(std::function<void(std::string)> sink);
  // Handles one message as a turn would (its own transaction; replies sent), as if it had come
  // from `connection` (the ZAP User-Id). For the fuzzer and tests that drive handlers directly.
  void HandleMessage(const transport::Frames& frames, const std::string& connection);

 private:
  struct Worker {
    std::string peer;  // ROUTER identity
    NodeRecord record;
    bool up = false;
    // For gangs on several nodes: where mpirun and kiln-rsh reach this node, and the CURVE key
    // its agent connected with (which its launch socket serves with).
    std::string address;
    std::string launch_endpoint;
    std::string public_key;
    Millis last_seen_saved_at = 0;  // when record.last_seen_at last went to the store
    bool leaving = false;  // its agent is shutting down: no new attempts until it registers again
    Millis lease_ends_at = 0;  // DOWN: when its attempts are failed (0: none held)
    core::NodeAccounts accounts;  // whom its agent runs as, and the accounts it reported
    // The admin's labels and the account labels, sorted: the labels placement matches.
    std::vector<std::string> policy_labels;
  };
  static constexpr Millis kLastSeenSaveEveryMs = 30000;
  static constexpr int kMaxMessagesPerTurn = 2000;
  // Eight checkpoint chunks: a burst of ckpt_read costs at most this much before it is sent.
  static constexpr size_t kMaxOutboxBytesPerTurn = 64 << 20;
  // Past this many bytes of replies waiting in the transport, clients' ckpt_read are refused for
  // now (a worker's resume fetch is not).
  static constexpr int64_t kMaxWaitingBeforeReadsWait = 64 << 20;
  // Replies that list (queue, logs) end a page at about this many bytes, far below the 4 MiB a
  // client accepts; the client asks for the next page.
  static constexpr size_t kMaxReplyBytes = 1 << 20;
  static constexpr size_t kMaxUnpagedReplyBytes = 3 << 20;
  static constexpr int64_t kMaxJobsPerReply = 5000;
  static constexpr Millis kLaunchResendMs = 2000;  // an unacknowledged launch is sent again
  static constexpr int kMaxLaunchSends = 30;      // then the attempt fails: the worker is broken
  // Requeues a worker's shutdown may cause one job before its stops count as failures (so that no
  // worker, broken or hostile, bounces a job forever).
  static constexpr int64_t kMaxRequeues = 20;

  SchedulerService(SchedulerOptions options, const Clock& clock, std::unique_ptr<Store> store,
                   std::unique_ptr<ServiceTransport> transport, std::string cluster_worker_key);
  Status Recover();
  // Rebuilds what the service keeps in memory of jobs, placements, usage and node settings from
  // the database (Recover at start; after a message's writes were rolled back).
  Status RebuildFromStore();

  // Handles one message atomically: in a savepoint, so that a handler that fails (replies an
  // error, or throws) leaves none of its writes, sends none of its other messages, and its
  // in-memory changes are rebuilt from the database. Refusals are still audited.
  void HandleOne(const transport::Frames& frames, const std::string& connection);
  void SendOutbox();  // after the commit that made its messages true
  // A turn's timers (liveness, heartbeats, pruning) and its scheduling pass, when due.
  void RunTimersAndPass();
  // Throws StoreWriteFailed when SQLite dropped the turn's transaction (Store::TransactionLost).
  void ThrowIfTransactionLost();

  // Dispatch (scheduler_service.cpp): decodes the envelope, checks the sender (a worker's key, a
  // user's token) and calls the message's handler.
  void Dispatch(Request& req);
  // Every message the scheduler accepts: who may send it, whether it only reads (served in
  // read-only mode), and its handler.
  using Handler = void (SchedulerService::*)(Request&);
  struct Route {
    bool from_worker;  // worker protocol (admitted key) rather than a user's request (token)
    bool reads_only;   // changes nothing: served while the database cannot be written
    Handler handle;
  };
  static const Route* FindRoute(const std::string& type);
  // Answers the request with an error; the request counts as failed (its writes are undone).
  void ReplyError(Request& req, const Status& status, std::vector<std::string> errors = {});
  template <typename M>
  void Reply(Request& req, const M& message, transport::Frames binary = {}) {
    Send(req.peer, message, req.envelope.id, std::move(binary));
  }
  template <typename M>
  void Send(const std::string& peer, const M& message, const std::string& id = "",
            transport::Frames binary = {}) {
    outbox_.push_back({peer, protocol::Encode(message, id, std::move(binary))});
    for (const auto& frame : outbox_.back().second) outbox_bytes_ += frame.size();
  }

  // Access control (access_control.cpp).
  // A ZAP verdict for a new connection: every CURVE client is let in, labelled with its key.
  transport::ZapVerdict DecideConnection(const transport::ZapRequest& request);
  bool IsAdmittedWorkerKey(const std::string& key) const;
  void RefreshWorkerKeys();
  // Reloads the users' quotas and Unix accounts (at start, and when an admin changed the
  // database); workers are asked about accounts they were not asked about yet.
  void RefreshUsers();
  // Drops cached users and reloads worker keys when an admin command changed the database.
  void NoticeAdminChanges();
  // True when `connection` is an admitted worker's; otherwise replies PermissionDenied and logs
  // the refusal (at most once a minute per key).
  bool AdmitWorkerMessage(Request& req);
  // Sets req.caller from the envelope's token, or replies Unauthenticated and returns false.
  bool AuthenticateClient(Request& req);
  // Records what req.caller did, or was refused, for the audit table (written when the request
  // ends: a refusal always, an "ok" only if the request's writes are kept).
  void Audit(Request& req, const std::string& action, const std::string& target,
             const Status& outcome, const std::string& detail = "");
  void OnWhoAmI(Request& req);

  // Client requests (client_handlers.cpp).
  void OnSubmit(Request& req);
  void OnQueue(Request& req);
  void OnShow(Request& req);
  void OnMetricsHistory(Request& req);
  void OnCancel(Request& req);
  void OnLogs(Request& req);
  void OnNodes(Request& req);
  void OnCheckpoints(Request& req);
  void OnJobAdmin(Request& req);
  void OnNodeAdmin(Request& req);
  // Services (service_handlers.cpp, docs/serving.md).
  void OnDeploy(Request& req);
  void OnUndeploy(Request& req);
  void OnServices(Request& req);
  void OnServiceGrant(Request& req);
  // The checkpoint a deploy names: the job's latest, a given step, or its best by its
  // checkpoint.keep_best metric (core::BestCheckpoint, as retention ranks them).
  Result<CheckpointRecord> DeployedCheckpoint(int64_t job_id, const CheckpointSpec& spec,
                                              const protocol::DeployRequest& request);
  // Starts and stops replica jobs as each service's rollout plan says; after anything that
  // changed a service or a replica, and once a second (not in the first seconds after a start,
  // while replicas report whether they are ready again).
  void ReconcileServices();
  void ReconcileServicesNow();  // at once, in the handler that changed a service
  Status StartReplica(const ServiceRecord& s);
  void StopReplica(int64_t job_id, const std::string& why);
  // `with_spec`: also the replicas' spec (the trained job's model and data), for clients.
  nlohmann::json ServiceView(const ServiceRecord& s, bool with_spec = false);
  bool ReplicaReady(int64_t job_id, const ActiveJob& job) const;
  // SHA-256 of the tokens of the service's owner and grantees.
  std::vector<std::string> ServeTokensOf(const ServiceRecord& s);
  // Sends each running replica its service's tokens when they changed since last sent.
  void PushServeTokens();
  // A replica's report ({"endpoint", "ready", "requests_per_s", ...}).
  void NoteServeReport(ActiveJob& job, int64_t job_id, const nlohmann::json& report,
                       const std::string& node_address);
  // After a replica job's transition: its service is looked at again, and a FAILED one counts
  // against it.
  void NoteReplicaTransition(const JobRecord& job);
  // Deletes a bounded batch of what the retention policy no longer keeps (pruning.cpp).
  void PruneOldRecords();
  // What `kiln submit` should warn about a job just queued: no node up at the last pass could
  // ever hold it.
  std::optional<std::string> SubmitWarning(const ActiveJob& job);
  // `kiln node remove`: forgets a DOWN node that holds nothing.
  void RemoveNode(Request& req, const Worker& w);
  // The in-memory reason of a pending job replaces the stored one in views.
  void WithLiveReason(JobRecord& job) const;

  // Worker messages (worker_handlers.cpp).
  void OnRegister(Request& req);
  void OnHeartbeat(Request& req);
  void OnAccountReport(Request& req);
  void OnJobStarted(Request& req);
  void OnLog(Request& req);
  void OnProgress(Request& req);
  // Keeps the report in the job's metrics history when scheduler/core/metric_history.h says so.
  void RecordMetricHistory(ActiveJob& job, const nlohmann::json& report);
  void OnJobExited(Request& req);
  // Whether that attempt of the job was placed on the node (live there, or in its allocation).
  bool PlacedOn(const JobRecord& job, int64_t attempt, const std::string& node) const;
  // The worker behind `peer`, if it registered and is up; otherwise asks it to register.
  Worker* KnownWorker(const std::string& peer);
  // Compares what a worker says it runs with what we believe runs there: attempts it does not
  // run (launched longer than the grace period ago) failed; attempts it runs that we do not want
  // are killed (again, until they are gone).
  void Reconcile(Worker& worker, const std::vector<protocol::RunningAttempt>& reported);

  // Job lifecycle (job_lifecycle.cpp).
  // Every state change goes through here (JobTable::Transition), and an attempt that ends is
  // charged to its user's fair share.
  Status Transition(JobRecord& job, core::JobEvent event, const std::string& reason);
  // Stops the job's running attempt and puts the job back to PENDING without using a retry; it
  // stays held until every node of that attempt has ended (HoldUntilAttemptGone).
  void RequeueAttempt(JobRecord& job, const std::string& why);
  // Ends the attempt as failed: retried while retries are left, unless `permanent`.
  void FailAttempt(JobRecord& job, const std::string& reason, bool permanent = false);
  // The worker is silent: DOWN (no new work); its attempts keep their places until its lease ends.
  void MarkWorkerDown(const std::string& name, const std::string& reason);
  // Its lease ended (its agent has stopped them, or is gone): its attempts end and fail.
  void EndLease(const std::string& name, const std::string& reason);
  void CheckSilentWorkers();
  void HeartbeatWorkers();
  // Stops the attempt's ranks (the worker sends SIGTERM, then SIGKILL after its grace period).
  void StopAttempt(const JobRecord& job, const std::string& reason);
  void StopTimedOutJobs(const std::vector<core::RunningJob>& running);
  // Stops every attempt with ranks on the node (SIGTERM: each saves a checkpoint) and puts its
  // job back to PENDING without using a retry; the job waits until that attempt's exit is
  // reported (its checkpoint is registered by then). Returns how many jobs.
  int RequeueJobsOn(const std::string& node, const std::string& by);
  // The requeued job's old attempt has ended (or its node died): it may be placed again.
  void ReleaseRequeued(int64_t job_id);
  // The attempt no longer holds anything on `node` (its exit came, or it is gone): the placement
  // ends, and a requeued job that waited for it may be placed again.
  void EndPlacement(const std::string& node, const AttemptKey& key);
  // A job whose attempt ended (failed or requeued) while that attempt's processes may still run
  // on some nodes (stopping) is held until every one of those placements has ended, so that one
  // job never runs two attempts at once, and the next resumes from the last checkpoint.
  void HoldUntilAttemptGone(int64_t job_id, int64_t attempt);
  bool JobWaitsForAnExit(int64_t job_id) const;
  // A write the turn depends on failed (a placement's: disk full, I/O error): throws
  // StoreWriteFailed, which undoes the whole turn (Turn -> EnterReadOnly).
  [[noreturn]] void DieOnStoreError(const Status& status);
  // Read-only mode (read_only_mode.cpp). A turn whose commit fails (a full disk) is undone
  // entirely: its replies are replaced by errors, memory is rebuilt from the database, and the
  // scheduler then serves only what reads (queue, show, logs, nodes, checkpoints), refusing
  // changes with an error that says why, until a probe write commits again (once a second).
  void EnterReadOnly(const Status& why);
  // Leaves read-only mode when the state dir has 64 MiB free and a probe write commits; false
  // while it still cannot. Probes come every second, backing off to 30 s when the disk keeps
  // filling again soon after.
  bool TryLeaveReadOnly();
  void ReadOnlyTurn();
  // A turn's transactions: CommitTurn runs `body` and commits, or undoes everything it did when
  // the commit (or a write it needs: StoreWriteFailed) fails, and enters read-only mode;
  // RolledBackTurn (read-only mode) keeps nothing `body` wrote. Both then send the outbox.
  void CommitTurn(const std::function<void()>& body);
  void RolledBackTurn(const std::function<void()>& body);
  // Hands each waiting message to `handle`, up to a turn's worth (kMaxMessagesPerTurn, or
  // kMaxOutboxBytesPerTurn of replies).
  void ForEachWaitingMessage(
      const std::function<void(const transport::Frames&, const std::string&)>& handle);
  void ServeReadOnly(const transport::Frames& frames, const std::string& connection);
  // What an attempt the scheduler did not place there (reported by a worker) holds on `node`, as
  // far as the job's records tell: its share of the attempt's ranks, GPUs and memory.
  Placement HoldingsOf(const JobRecord& job, int64_t attempt, const std::string& node);
  // The nodes the job's `attempt` was placed on, as recorded ([{"node", "ranks", "gpu_ids"}],
  // the first leads); empty when there is no such attempt.
  nlohmann::json RecordedNodes(int64_t job_id, int64_t attempt);

  // Job arrays and sweeps (array_jobs.cpp, sweep_jobs.cpp; docs/architecture.md). Handlers
  // that fail reply with the error and return false (or nullopt).
  bool ArrayOfSubmit(Request& req, const protocol::SubmitRequest& request,
                     std::optional<ArrayState>* array);  // --array or a sweep, parsed
  // Checks the tasks' specs (an array's first and last, every trial) and stores the state.
  bool PrepareArray(Request& req, const ArrayState& array, JobRecord& job);
  // Task `index` (the lowest pending one when absent) gets its PENDING row; the array's row is
  // written. nullopt when the index is not pending, or its spec fails (the task is FAILED).
  std::optional<int64_t> StartArrayTask(ActiveJob& array, std::optional<int64_t> index);
  void SaveArrayState(int64_t array_id, const ArrayState& array);  // into the array's row
  void FinishArrayIfDone(int64_t array_id);  // its final state once no task is left
  // A dependency failed: pending tasks dropped, those with rows fail, the array FAILED.
  void FailArray(int64_t array_id, const std::string& reason);
  // The row an "ID_INDEX" request is about; for a pending index the row it would have
  // (*prospective), checked before MakeArrayTask makes it, so a refusal writes nothing.
  bool ArrayTaskOf(Request& req, const JobRecord& array, int64_t index, JobRecord* task,
                   bool* prospective);
  bool MakeArrayTask(Request& req, JobRecord* task);
  // Cancel, hold, release or priority of the array and each unfinished task.
  void CancelArray(Request& req, JobRecord& array);
  void AdminArray(Request& req, JobRecord& array, const protocol::JobAdminRequest& request);
  std::string ArrayLimitReason(int64_t array_id);  // why the next task waits (%MAX)
  // {"tasks", "max_running", "pending", "pending_count", "states": {STATE: n}}.
  nlohmann::json ArrayView(const JobRecord& row);
  // A trial's epoch report: its record and ASHA's decision; at its end, its checkpoints fill in
  // reports lost while the scheduler was down; the leaderboard (docs/sweeps.md).
  void NoteTrialReport(ActiveJob& task, const nlohmann::json& report);
  void NoteTrialEnded(const JobRecord& task);
  nlohmann::json SweepView(const JobRecord& row, const ArrayState& array);

  // Start-time estimates (start_estimates.cpp): after a pass, each waiting job's; a running
  // job's progress (for its expected end); the estimate in a job's view.
  void EstimateStartTimes(const core::SchedulingPlan& plan, Millis now);
  void NoteProgressRate(ActiveJob& job, const nlohmann::json& report);
  void AddStartEstimate(nlohmann::json& view, int64_t job_id) const;

  // Scheduling (scheduling_pass.cpp).
  void SchedulingPass();
  std::vector<core::NodeState> NodeStates(std::vector<std::string>* names);
  NodeUse UseOf(const std::string& node);  // what live attempts hold there
  bool AnyUsableFreeSlot();                // on an up, undrained node
  std::vector<core::RunningJob> RunningJobs(const std::unordered_map<std::string, int32_t>& index);
  std::vector<core::UserShare> UserShares(Millis now);
  void Launch(JobRecord& job, const std::vector<std::pair<std::string, core::NodeShare>>& shares);
  // Whether other nodes can reach this worker for a gang spread over several nodes: it has a
  // launch endpoint and a non-loopback --address that no other worker shares.
  static bool JoinsGangs(const Worker& w, const std::map<std::string, int>& nodes_at_address);
  // For the reason of a job that needs several nodes and waits for resources: "; NODES can take
  // only gangs that fit on them whole (...)", naming the up nodes that cannot share a gang; ""
  // when all can, or when only one node is up.
  std::string GangHint(const std::vector<core::NodeState>& nodes);
  // Accounts (user_accounts.cpp). The Unix account `user`'s jobs run as (unix_user never empty),
  // and whether it may be uid 0.
  UserAccount AccountOf(const std::string& user) const;
  const std::string& UnixUserOf(const std::string& user) const;
  // Records what a worker said of accounts users map to (others are ignored); whether any changed.
  bool SetAccountUids(Worker& w, const std::vector<protocol::AccountUid>& uids);
  // Recomputes a worker's policy_labels from its own labels and its accounts.
  static void RefreshPolicyLabels(Worker& w);
  // Why no up node can run `job` as its user's account ("Account: ..."); nullopt when one can.
  std::optional<std::string> AccountWait(const ActiveJob& job);

  // Checkpoints (checkpoint_handlers.cpp).
  void OnCheckpointBegin(Request& req);
  // req.frames: [peer][envelope][chunk bytes].
  void OnCheckpointChunk(Request& req);
  void OnCheckpointRead(Request& req);
  void OnCheckpointRemove(Request& req);
  Status RegisterCheckpoint(const CheckpointRecord& record);
  // Why storing `bytes` more of the user's checkpoints is refused (max_checkpoint_bytes), if it is.
  std::optional<std::string> CheckpointQuotaRefusal(const std::string& user, int64_t bytes);
  // Whether one of the job's checkpoints is stored as the blob `sha256`.
  bool JobHasBlob(int64_t job_id, const std::string& sha256);
  // Steps of job_id's checkpoints that an attempt resumes from or a pending job will resume from.
  std::set<int64_t> ProtectedSteps(int64_t job_id);
  void ApplyRetention(const JobRecord& job);
  void DeleteCheckpointRow(const CheckpointRecord& record);
  // Files are unlinked only after the turn's transaction committed.
  void RemoveFilesAfterCommit();

  SchedulerOptions options_;
  const Clock& clock_;
  std::unique_ptr<Store> store_;
  CheckpointStore checkpoints_;
  UploadRegistry uploads_;  // checkpoint uploads in progress (their bytes in checkpoints_)
  std::unique_ptr<ServiceTransport> transport_;
  std::string cluster_worker_key_;         // public key of worker-cluster.key
  // The allow-list (key -> the node it was admitted as), reloaded on admin changes.
  std::map<std::string, std::string> admitted_worker_keys_;
  std::map<std::string, std::string> revoked_worker_keys_;  // key -> node name it had
  std::map<std::string, Millis> refusal_logged_at_;  // by key: refusals are logged once a minute
  std::unordered_map<std::string, UserQuota> quotas_;  // by user, those with a limit set
  std::unordered_map<std::string, UserRecord> users_;  // by name, as of the last RefreshUsers
  std::set<std::string> mapped_accounts_;              // every user's Unix account
  Millis unknown_token_logged_at_ = 0;                 // unknown tokens: one warning a minute
  int64_t unknown_tokens_unlogged_ = 0;
  // Users by token, as looked up; dropped whenever the database changes underneath (an admin's
  // user add/token/remove), so a replaced or removed token stops working within one loop turn.
  std::unordered_map<std::string, core::Caller> callers_by_token_;
  int64_t external_changes_ = -1;
  core::HeartbeatMonitor monitor_;
  core::FairShareLedger ledger_;

  std::map<std::string, Worker> workers_;                          // by node name
  std::map<std::string, std::string> node_of_peer_;                // ROUTER identity -> name
  // What each attempt holds on each node until it ends there (persisted; placements.h).
  PlacementTable placements_;
  // Every job's state changes, and the view of unfinished jobs that scheduling reads.
  JobTable jobs_;
  // Deployed services (persisted); their replicas are jobs in jobs_.
  ServiceTable services_;
  // What each replica last reported (memory only: repeated every second by the replica).
  struct ServeStatus {
    int64_t attempt = 0;
    bool ready = false;
    nlohmann::json report;
  };
  std::unordered_map<int64_t, ServeStatus> serve_status_;
  // The tokens each replica job was last sent, with its attempt.
  std::map<int64_t, std::pair<int64_t, std::vector<std::string>>> serve_tokens_sent_;
  bool services_dirty_ = true;
  Millis next_service_check_at_ = 0;
  Millis services_settle_until_ = 0;
  std::vector<std::pair<std::string, transport::Frames>> outbox_;
  // Bytes put in the outbox this turn (rolled-back replies included): a turn stops taking
  // messages past kMaxOutboxBytesPerTurn, so replies never pile up in memory before they are sent.
  size_t outbox_bytes_ = 0;
  std::vector<CheckpointRecord>
      deleted_checkpoints_;  // rows deleted this turn; files go after commit
  bool dirty_ = true;  // something changed that a scheduling pass could act on
  // Jobs were submitted since the last pass. New jobs alone cannot start anything when the last
  // pass left no free slot on any usable node: then they wait for the next event or the periodic
  // pass (their reason reads "not yet scheduled" until then), and a burst of submits into a full
  // cluster does not rescan the whole queue every turn.
  bool submitted_ = false;
  bool capacity_left_ = true;  // after the last pass, some usable node had a free slot
  Millis pass_allowed_at_ = 0;  // passes take at most about half the loop's time
  Millis next_heartbeat_at_ = 0;
  Millis next_liveness_check_at_ = 0;
  // Retention (pruning.cpp): when to prune next, and up to when each kind is pruned already.
  Millis next_prune_at_ = 0;
  Millis next_checkpoint_bytes_at_ = 0;  // kiln_checkpoint_bytes is refreshed every 10 s
  std::vector<core::NodeClass> up_node_classes_;  // as of the last pass: SubmitWarning's view
  Millis logs_pruned_until_ = 0;
  Millis events_pruned_until_ = 0;
  Millis next_pass_at_ = 0;
  // Metrics (metrics.cpp): counters and histograms updated where things happen, gauges
  // refreshed from the loop's state when the text is published.
  void DeclareMetrics();
  void PublishMetrics();
  // After `job` moved to its new state at wall time `now`.
  void CountTransition(const JobRecord& job, Millis now);
  static constexpr Millis kMetricsEveryMs = 2000;
  metrics::Registry metrics_;
  std::function<void(std::string)> metrics_sink_;
  Millis next_metrics_at_ = 0;
  // Read-only mode: why the last commit failed, when to probe the disk next, and the client
  // requests of this turn (peer, request id), which get an error if the turn is undone.
  std::optional<Status> read_only_;
  Millis next_write_probe_at_ = 0;
  Millis write_probe_every_ms_ = 1000;
  Millis left_read_only_at_ = -1'000'000;
  std::vector<std::pair<std::string, std::string>> turn_requests_;
};

// See DieOnStoreError.
class StoreWriteFailed : public std::runtime_error {
 public:
  explicit StoreWriteFailed(Status status)
      : std::runtime_error(status.ToString()), status_(std::move(status)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

}  // namespace kiln::service
