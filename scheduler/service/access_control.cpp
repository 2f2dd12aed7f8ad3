// Who is on the other end of a message: CURVE connections labelled by ZAP (workers), tokens in
// envelopes (users), and the audit table of what they did.
#include <spdlog/spdlog.h>

#include "common/credentials.h"
#include "common/shell_quote.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using protocol::Envelope;

namespace {
constexpr Millis kRefusalLogEveryMs = 60000;
}  // namespace

transport::ZapVerdict SchedulerService::DecideConnection(const transport::ZapRequest& request) {
  if (request.mechanism != "CURVE" || request.public_key.empty()) {
    return {false, "", "kiln accepts CURVE connections only"};
  }
  // Everyone who knows the server key may talk: users prove who they are per request (token),
  // workers by their key being admitted when each message arrives. Workers do not choose their
  // routing id (ZeroMQ gives each connection one that no peer can claim), so no connection can
  // take over the address the scheduler sends a worker's launches to.
  return {true, core::ConnectionIdOf(request.public_key), ""};
}

bool SchedulerService::IsAdmittedWorkerKey(const std::string& key) const {
  return !key.empty() && (key == cluster_worker_key_ || admitted_worker_keys_.count(key) > 0);
}

void SchedulerService::RefreshWorkerKeys() {
  auto keys = store_->ListWorkerKeys();
  if (!keys.ok()) {
    spdlog::warn("cannot read the worker allow-list: {}", keys.status().ToString());
    return;
  }
  std::map<std::string, std::string> admitted;
  for (const auto& k : *keys) admitted[k.public_key] = k.name;
  admitted_worker_keys_ = std::move(admitted);
  auto revoked = store_->ListRevokedWorkerKeys();
  if (!revoked.ok()) {
    spdlog::warn("cannot read the revoked worker keys: {}", revoked.status().ToString());
    return;
  }
  std::map<std::string, std::string> by_key;
  for (const auto& k : *revoked) by_key[k.public_key] = k.name;
  revoked_worker_keys_ = std::move(by_key);
}

void SchedulerService::NoticeAdminChanges() {
  auto counter = store_->ExternalChangeCounter();
  if (!counter.ok() || *counter == external_changes_) return;
  external_changes_ = *counter;
  callers_by_token_.clear();
  RefreshWorkerKeys();
  RefreshUsers();
}

bool SchedulerService::AdmitWorkerMessage(Request& req) {
  // Checked against the allow-list as it is now: an admitted key works at once, a revoked one
  // stops within a liveness check, neither waits for a reconnect.
  const std::string& presented = req.connection_key;
  if (IsAdmittedWorkerKey(presented)) return true;
  const Millis now = clock_.MonotonicMs();
  // The log (read by the admin) names the state dir; the reply (to anyone who knows the server
  // key) does not.
  // The key goes after "--": a Z85 key may start with '-', which would read as an option.
  const std::string allow = ShellCommand({"kiln-scheduler", "--state-dir", options_.state_dir,
                                          "worker", "allow", "--name"}) +
                            " NODE -- " + ShellQuote(presented);
  const std::string allow_hint =
      "kiln-scheduler --state-dir STATE_DIR worker allow --name NODE -- " + ShellQuote(presented);
  auto revoked = revoked_worker_keys_.find(presented);
  auto& logged_at = refusal_logged_at_[presented];
  if (logged_at == 0 || now - logged_at >= kRefusalLogEveryMs) {
    logged_at = now;
    spdlog::warn("refused \"{}\" from a worker that is not admitted (key {}{}); admit it with: {}",
                 req.envelope.type, presented.empty() ? "none" : presented,
                 revoked != revoked_worker_keys_.end() ? ", revoked" : "", allow);
  }
  if (refusal_logged_at_.size() > 10000) refusal_logged_at_.clear();
  if (revoked != revoked_worker_keys_.end()) {
    ReplyError(req, Status::PermissionDenied(
                        "worker not admitted: an admin revoked its key " + presented +
                        (revoked->second.empty() ? "" : " (node " + revoked->second + ")") +
                        "; to admit it again, on the scheduler host run: " + allow_hint));
    return false;
  }
  ReplyError(req,
             Status::PermissionDenied("worker not admitted: this scheduler does not know the key " +
                                      presented + "; on the scheduler host run: " + allow_hint +
                                      " (or start the worker with the cluster key, state dir: "
                                      "worker-cluster.key)"));
  return false;
}

bool SchedulerService::AuthenticateClient(Request& req) {
  req.caller = {};
  if (req.envelope.auth.empty()) {
    ReplyError(req, Status::Unauthenticated(
                        "the request carries no token: run `kiln login` with the token "
                        "your admin gave you (kiln-scheduler user add NAME)"));
    return false;
  }
  Status refused = Status::Unauthenticated(
      "the token is not valid on this scheduler: it was replaced (kiln-scheduler user token NAME) "
      "or removed, or is for another cluster; run `kiln login` with a current token");
  if (!LooksLikeAccessToken(req.envelope.auth)) {
    ReplyError(req, refused);
    return false;
  }
  if (auto known = callers_by_token_.find(req.envelope.auth); known != callers_by_token_.end()) {
    req.caller = known->second;
    return true;
  }
  auto user = store_->FindUserByTokenDigest(AccessTokenDigest(req.envelope.auth));
  if (!user.ok()) {
    ReplyError(req, user.status());
    return false;
  }
  if (!user->has_value()) {
    // Anyone who knows the server key can send these: logged at most once a minute, with how
    // many were not logged, so that a flood cannot fill the admin's disk.
    const Millis now = clock_.MonotonicMs();
    if (unknown_token_logged_at_ == 0 || now - unknown_token_logged_at_ >= kRefusalLogEveryMs) {
      spdlog::warn("refused a \"{}\" request with an unknown token{}", req.envelope.type,
                   unknown_tokens_unlogged_ > 0
                       ? " (and " + std::to_string(unknown_tokens_unlogged_) +
                             " more since the last such warning)"
                       : std::string());
      unknown_token_logged_at_ = now;
      unknown_tokens_unlogged_ = 0;
    } else {
      ++unknown_tokens_unlogged_;
    }
    ReplyError(req, refused);
    return false;
  }
  req.caller = {(*user)->name, (*user)->admin};
  if (callers_by_token_.size() >= 100000) callers_by_token_.clear();
  callers_by_token_[req.envelope.auth] = req.caller;
  return true;
}

void SchedulerService::Audit(Request& req, const std::string& action, const std::string& target,
                             const Status& outcome, const std::string& detail) {
  // Written once the message is handled (HandleOne): a refusal is kept even when the message's
  // other writes are rolled back, an "ok" only when they are kept.
  req.audit.push_back({0, clock_.WallMs(), req.caller.user.empty() ? "-" : req.caller.user, action,
                       target, outcome.ok() ? "ok" : StatusCodeName(outcome.code()),
                       outcome.ok() ? detail : outcome.message()});
}

void SchedulerService::OnWhoAmI(Request& req) {
  Reply(req, protocol::DataReply{{{"user", req.caller.user}, {"admin", req.caller.admin}}});
}

}  // namespace kiln::service
