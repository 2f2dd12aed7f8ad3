// Which of the accounts the scheduler asked about this node has, and their uids: the agent
// answers register_ack and check_accounts with them, and looks them up again now and then so
// that an account added or removed later reaches the scheduler (scheduler/core/accounts.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/protocol/messages.h"

namespace kiln::agent {

class AccountReporter {
 public:
  using LookUp = std::function<int64_t(const std::string& account)>;  // uid, or -1: none
  explicit AccountReporter(LookUp look_up);

  static constexpr size_t kMaxAccounts = 100000;

  // Looks up each account asked about (remembered for Recheck); the report names them all.
  std::vector<protocol::AccountUid> Check(const std::vector<std::string>& accounts);
  // Looks every remembered account up again; the accounts whose answer changed.
  std::vector<protocol::AccountUid> Recheck();
  // The answers given so far (sent with each register: a restarted scheduler knows them at once).
  std::vector<protocol::AccountUid> Known() const;

 private:
  LookUp look_up_;
  std::map<std::string, int64_t> known_;
};

}  // namespace kiln::agent
