// The agent's side of accounts: whom a launch runs as here (worker/agent/run_as.h), and the
// account reports that tell the scheduler which accounts this node can run.
#include <unistd.h>

#include "worker/agent/agent.h"

namespace kiln::agent {

void Agent::ReportAccounts(std::vector<protocol::AccountUid> accounts) {
  if (accounts.empty()) return;
  SendToScheduler(protocol::Encode(protocol::AccountReport{options_.name, std::move(accounts)}));
}

Result<std::optional<RunAs>> Agent::AccountFor(const protocol::LaunchJob& launch) {
  const bool root = ::geteuid() == 0;
  if (!launch.run_as) {
    if (root) {
      return Status::FailedPrecondition(
          "Account: the scheduler named no account to run the job "
          "as, and this agent runs as root; upgrade the scheduler");
    }
    return std::optional<RunAs>();  // a scheduler from before accounts: as this agent
  }
  auto who = ResolveRunAs(*launch.run_as, launch.allow_root.value_or(false), options_.name);
  if (!who.ok()) {
    ReportAccounts(accounts_.Check({*launch.run_as}));  // the scheduler's view was out of date
    return who.status();
  }
  // A root agent always switches (the job never sees the agent's environment); any other agent
  // already is the account.
  if (!root) return std::optional<RunAs>();
  return std::optional<RunAs>(std::move(who).value());
}

}  // namespace kiln::agent
