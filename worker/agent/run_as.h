// The Unix account an attempt's processes run as on this node (the job's owner's, mapped by the
// admin: `kiln-scheduler user set NAME --unix-user ACCOUNT`), looked up here with getpwnam.
//
// A root agent may start processes as any account the node has, but uid 0 only for users an admin
// allowed root (`--allow-root`). An agent that is not root can start them only as its own account.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kiln::agent {

struct RunAs {
  std::string account;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (getgrouplist), the primary one included
  std::string home;
  std::string shell;
};

// The account's uid on this node; -1 when it has none.
int64_t LookUpUid(const std::string& account);
// The name of the account this agent runs as ("uid N" when it has no name).
std::string OwnAccount();

// Looks `account` up and checks that this agent may start processes as it. The error says why
// not, e.g. "Account: node w1 has no account alice"; it names the node so the job's reason does.
Result<RunAs> ResolveRunAs(const std::string& account, bool allow_root,
                           const std::string& node_name);

// Gives a folder this agent just made to the account: every entry below it is chowned without
// following links, and the folder itself gets mode 0700.
Status GiveTree(const std::string& dir, const RunAs& who);

// The environment a process started as `who` begins with: HOME, USER, LOGNAME and SHELL of the
// account, and of the agent's own only PATH, LD_LIBRARY_PATH, LANG, LC_ALL, TZ, TMPDIR,
// KILN_LOG_LEVEL and OpenMPI's settings (OMPI_MCA_*, OPAL_*, PMIX_*, HWLOC_*).
std::vector<std::pair<std::string, std::string>> CleanEnvironment(const RunAs& who);

}  // namespace kiln::agent
