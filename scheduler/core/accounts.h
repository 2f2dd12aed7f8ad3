// Which nodes may run a user's jobs as the user's Unix account, as labels the placement policy
// matches, and why none may. Pure: the facts come from the agents' account reports.
//
// A node can run a job as account A when its agent can start processes as A: a root agent when A
// exists there, an agent that is not root only when A is its own account. A that is uid 0 there
// runs only for users an admin allowed root (`user set NAME --allow-root`).
//
// Node side: for every account it reported, a node carries "unix:A" when it can run as A and A is
// not uid 0, and "unix-any:A" when it can run as A at all. Job side: a job needs "unix:A", or
// "unix-any:A" for a user allowed root. Such labels have a ':', which labels in specs cannot.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::core {

// A POSIX-style account name: 1-32 of [A-Za-z0-9._-], not starting with '-' (nor '.').
bool IsValidUnixAccountName(const std::string& name);

// What a node's agent told of the accounts it was asked about.
struct NodeAccounts {
  std::optional<int64_t> agent_uid;     // unset: the node has not reported yet
  std::string agent_account;            // the agent's own account name
  std::map<std::string, int64_t> uids;  // account -> uid there; -1: no such account there
};

// The account label a job of this user needs.
std::string AccountLabel(const std::string& account, bool allow_root);
// The labels a node carries for the accounts it reported (sorted).
std::vector<std::string> AccountLabels(const NodeAccounts& node);
// Labels with a ':' are kiln's own (accounts); the others are the admin's.
bool IsInternalLabel(const std::string& label);

// Why this node cannot run jobs of `user` as `account`, e.g. "node n3 does not have it";
// nullopt when it can.
std::optional<std::string> AccountProblemOn(const std::string& node_name, const NodeAccounts& node,
                                            const std::string& account, bool allow_root);

// "Account: user U maps to account A, which node n3 does not have" (one node), or the problem of
// each node (at most 4 named, then a count), with the fix where the admin has one.
std::string AccountWaitReason(const std::string& user, const std::string& account, bool allow_root,
                              const std::vector<std::pair<std::string, std::string>>& problems);

}  // namespace kiln::core
