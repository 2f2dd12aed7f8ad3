#include "worker/agent/account_reporter.h"

#include <utility>

namespace kiln::agent {

AccountReporter::AccountReporter(LookUp look_up) : look_up_(std::move(look_up)) {}

std::vector<protocol::AccountUid> AccountReporter::Check(const std::vector<std::string>& accounts) {
  std::vector<protocol::AccountUid> report;
  for (const auto& account : accounts) {
    if (account.empty() || (known_.size() >= kMaxAccounts && !known_.count(account))) continue;
    const int64_t uid = look_up_(account);
    known_[account] = uid;
    report.push_back({account, uid});
  }
  return report;
}

std::vector<protocol::AccountUid> AccountReporter::Recheck() {
  std::vector<protocol::AccountUid> changed;
  for (auto& [account, uid] : known_) {
    const int64_t now = look_up_(account);
    if (now == uid) continue;
    uid = now;
    changed.push_back({account, uid});
  }
  return changed;
}

std::vector<protocol::AccountUid> AccountReporter::Known() const {
  std::vector<protocol::AccountUid> known;
  for (const auto& [account, uid] : known_) known.push_back({account, uid});
  return known;
}

}  // namespace kiln::agent
