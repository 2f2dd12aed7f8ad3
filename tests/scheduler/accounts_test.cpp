#include "scheduler/core/accounts.h"

#include <catch2/catch.hpp>

using namespace kiln::core;

TEST_CASE("account names are checked before they reach getpwnam") {
  CHECK(IsValidUnixAccountName("alice"));
  CHECK(IsValidUnixAccountName("svc_train-2.a"));
  CHECK_FALSE(IsValidUnixAccountName(""));
  CHECK_FALSE(IsValidUnixAccountName("-rf"));
  CHECK_FALSE(IsValidUnixAccountName(".."));
  CHECK_FALSE(IsValidUnixAccountName("a/b"));
  CHECK_FALSE(IsValidUnixAccountName("a b"));
  CHECK_FALSE(IsValidUnixAccountName(std::string(33, 'a')));
}

TEST_CASE("a root agent runs as every account it has and marks uid 0 apart") {
  NodeAccounts root_node{0, "root", {{"alice", 1000}, {"root", 0}, {"ghost", -1}}};
  CHECK(AccountLabels(root_node) ==
        std::vector<std::string>{"unix-any:alice", "unix-any:root", "unix:alice"});
  CHECK_FALSE(AccountProblemOn("n1", root_node, "alice", false));
  CHECK(*AccountProblemOn("n1", root_node, "root", false) == "it is uid 0 on node n1");
  CHECK_FALSE(AccountProblemOn("n1", root_node, "root", true));
  CHECK(*AccountProblemOn("n1", root_node, "ghost", false) == "node n1 does not have it");
  CHECK(*AccountProblemOn("n1", root_node, "bob", false) == "node n1 has not reported it yet");
  // The labels agree with the problems: a job needs AccountLabel, the node carries AccountLabels.
  auto has = [&](const std::string& l) {
    auto labels = AccountLabels(root_node);
    return std::find(labels.begin(), labels.end(), l) != labels.end();
  };
  CHECK(has(AccountLabel("alice", false)));
  CHECK_FALSE(has(AccountLabel("root", false)));
  CHECK(has(AccountLabel("root", true)));
  CHECK_FALSE(has(AccountLabel("ghost", true)));
}

TEST_CASE("an agent that is not root runs jobs only as its own account") {
  NodeAccounts own{1001, "kiln", {{"kiln", 1001}, {"alice", 1000}}};
  CHECK(AccountLabels(own) == std::vector<std::string>{"unix-any:kiln", "unix:kiln"});
  CHECK_FALSE(AccountProblemOn("w", own, "kiln", false));
  CHECK(*AccountProblemOn("w", own, "alice", false) ==
        "the agent of node w runs as kiln, not root, and can start jobs only as that account");
  NodeAccounts silent;
  CHECK(AccountLabels(silent).empty());
  CHECK(*AccountProblemOn("w", silent, "alice", false) ==
        "node w has not reported its accounts yet");
}

TEST_CASE("the wait reason names the user, the account and each node's problem") {
  CHECK(AccountWaitReason("alice", "x", false, {{"n3", "node n3 does not have it"}}) ==
        "Account: user alice maps to account x, which node n3 does not have");
  CHECK(AccountWaitReason("root", "root", false, {{"n1", "it is uid 0 on node n1"}}) ==
        "Account: user root maps to account root, and it is uid 0 on node n1 (an admin who "
        "means it: kiln-scheduler user set root --allow-root)");
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 6; ++i) {
    many.push_back({"n" + std::to_string(i), "node n" + std::to_string(i) + " does not have it"});
  }
  CHECK(AccountWaitReason("bob", "bob", false, many) ==
        "Account: user bob maps to account bob, which no up node can run jobs as: node n0 does "
        "not have it; node n1 does not have it; node n2 does not have it; node n3 does not have "
        "it; and 2 more nodes");
  CHECK(IsInternalLabel("unix:alice"));
  CHECK_FALSE(IsInternalLabel("gpu-a100"));
}
