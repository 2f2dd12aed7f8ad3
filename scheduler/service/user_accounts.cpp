// Users' quotas and Unix accounts as the service keeps them, and the workers' account reports:
// which nodes may run whose jobs (scheduler/core/accounts.h).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

void SchedulerService::RefreshUsers() {
  auto users = store_->ListUsers();
  if (!users.ok()) {
    spdlog::warn("cannot read the users: {}", users.status().ToString());
    return;
  }
  std::unordered_map<std::string, UserQuota> quotas;
  std::unordered_map<std::string, UserRecord> by_name;
  std::unordered_map<std::string, std::string> labels;
  std::set<std::string> accounts;
  for (const auto& u : *users) {
    if (!(u.quota == UserQuota{})) quotas[u.name] = u.quota;
    labels[u.name] = core::AccountLabel(u.unix_user(), u.account.allow_root);
    accounts.insert(u.unix_user());
    by_name[u.name] = u;
  }
  if (quotas != quotas_) dirty_ = true;  // jobs waiting on a quota may start now
  quotas_ = std::move(quotas);
  users_ = std::move(by_name);
  PushServeTokens();  // a new or removed token changes who may call the services
  if (jobs_.SetAccountLabels(std::move(labels))) dirty_ = true;
  // Accounts no worker was asked about yet: every up worker looks them up now.
  std::vector<std::string> added;
  std::set_difference(accounts.begin(), accounts.end(), mapped_accounts_.begin(),
                      mapped_accounts_.end(), std::back_inserter(added));
  mapped_accounts_ = std::move(accounts);
  if (added.empty()) return;
  for (const auto& [name, w] : workers_) {
    if (w.up && !w.peer.empty()) Send(w.peer, protocol::CheckAccounts{added});
  }
}

UserAccount SchedulerService::AccountOf(const std::string& user) const {
  auto it = users_.find(user);
  if (it == users_.end()) return UserAccount{user, false};
  return UserAccount{it->second.unix_user(), it->second.account.allow_root};
}

const std::string& SchedulerService::UnixUserOf(const std::string& user) const {
  auto it = users_.find(user);
  return it == users_.end() ? user : it->second.unix_user();
}

void SchedulerService::RefreshPolicyLabels(Worker& w) {
  std::vector<std::string> labels = core::AccountLabels(w.accounts);
  labels.insert(labels.end(), w.record.labels.begin(), w.record.labels.end());
  std::sort(labels.begin(), labels.end());
  w.policy_labels = std::move(labels);
}

bool SchedulerService::SetAccountUids(Worker& w, const std::vector<protocol::AccountUid>& uids) {
  bool changed = false;
  for (const auto& a : uids) {
    if (mapped_accounts_.count(a.account) == 0) continue;  // no user's: nothing to keep
    const int64_t uid = a.uid < 0 ? -1 : a.uid;
    auto [it, inserted] = w.accounts.uids.try_emplace(a.account, uid);
    if (!inserted && it->second == uid) continue;
    it->second = uid;
    changed = true;
    spdlog::debug("node {}: account {} {}", w.record.name, a.account,
                  uid < 0 ? std::string("does not exist there") : "is uid " + std::to_string(uid));
  }
  return changed;
}

void SchedulerService::OnAccountReport(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::AccountReport, report);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr || !SetAccountUids(*w, report.accounts)) return;
  RefreshPolicyLabels(*w);
  dirty_ = true;
}

std::optional<std::string> SchedulerService::AccountWait(const ActiveJob& job) {
  const std::string& user = jobs_.user_names()[job.queued.user];
  if (users_.count(user) == 0) {
    return "Account: user " + user +
           " no longer exists, so its jobs run as no account (kiln "
           "cancel them, or an admin adds the user again)";
  }
  const std::string label = jobs_.AccountLabelOf(user);
  std::vector<std::pair<std::string, std::string>> problems;
  const std::string& account = UnixUserOf(user);
  const bool allow_root = AccountOf(user).allow_root;
  for (const auto& [name, w] : workers_) {
    if (!w.up || w.record.drained || w.leaving) continue;
    if (std::binary_search(w.policy_labels.begin(), w.policy_labels.end(), label)) {
      return std::nullopt;
    }
    auto why = core::AccountProblemOn(name, w.accounts, account, allow_root);
    problems.push_back({name, why.value_or("node " + name + " cannot run it")});
  }
  return core::AccountWaitReason(user, account, allow_root, problems);
}

}  // namespace kiln::service
