#include "scheduler/core/accounts.h"

#include <algorithm>

namespace kiln::core {

bool IsValidUnixAccountName(const std::string& name) {
  if (name.empty() || name.size() > 32 || name[0] == '-' || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::string AccountLabel(const std::string& account, bool allow_root) {
  return (allow_root ? "unix-any:" : "unix:") + account;
}

namespace {

// Whether the agent can start processes as an account of this uid.
bool CanRunAs(const NodeAccounts& node, int64_t uid) {
  return uid >= 0 && node.agent_uid && (*node.agent_uid == 0 || *node.agent_uid == uid);
}

}  // namespace

std::vector<std::string> AccountLabels(const NodeAccounts& node) {
  std::vector<std::string> labels;
  for (const auto& [account, uid] : node.uids) {
    if (!CanRunAs(node, uid)) continue;
    labels.push_back(AccountLabel(account, true));
    if (uid != 0) labels.push_back(AccountLabel(account, false));
  }
  std::sort(labels.begin(), labels.end());
  return labels;
}

bool IsInternalLabel(const std::string& label) { return label.find(':') != std::string::npos; }

std::optional<std::string> AccountProblemOn(const std::string& node_name, const NodeAccounts& node,
                                            const std::string& account, bool allow_root) {
  if (!node.agent_uid) return "node " + node_name + " has not reported its accounts yet";
  auto it = node.uids.find(account);
  if (it == node.uids.end()) return "node " + node_name + " has not reported it yet";
  const int64_t uid = it->second;
  if (uid < 0) return "node " + node_name + " does not have it";
  if (!CanRunAs(node, uid)) {
    return "the agent of node " + node_name + " runs as " +
           (node.agent_account.empty() ? "uid " + std::to_string(*node.agent_uid)
                                       : node.agent_account) +
           ", not root, and can start jobs only as that account";
  }
  if (uid == 0 && !allow_root) return "it is uid 0 on node " + node_name;
  return std::nullopt;
}

std::string AccountWaitReason(const std::string& user, const std::string& account, bool allow_root,
                              const std::vector<std::pair<std::string, std::string>>& problems) {
  std::string text = "Account: user " + user + " maps to account " + account + ", ";
  bool uid0 = false;
  for (const auto& p : problems) uid0 = uid0 || p.second.rfind("it is uid 0", 0) == 0;
  if (problems.empty()) {
    text += "and no node is up to run it";
  } else if (problems.size() == 1) {
    const std::string& why = problems.front().second;
    // "node n3 does not have it" reads better as "which node n3 does not have".
    const std::string suffix = " does not have it";
    if (why.size() > suffix.size() &&
        why.compare(why.size() - suffix.size(), suffix.size(), suffix) == 0) {
      text += "which " + why.substr(0, why.size() - 3);
    } else {
      text += "and " + why;
    }
  } else {
    text += "which no up node can run jobs as: ";
    const size_t shown = std::min<size_t>(problems.size(), 4);
    for (size_t i = 0; i < shown; ++i) text += (i ? "; " : "") + problems[i].second;
    if (problems.size() > shown) {
      text += "; and " + std::to_string(problems.size() - shown) + " more nodes";
    }
  }
  if (uid0 && !allow_root) {
    text += " (an admin who means it: kiln-scheduler user set " + user + " --allow-root)";
  }
  return text;
}

}  // namespace kiln::core
