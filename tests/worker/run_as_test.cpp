#include "worker/agent/run_as.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "worker/agent/account_reporter.h"
#include "worker/agent/process_group.h"

using namespace kiln::agent;

TEST_CASE("the account reporter answers what it was asked and later only what changed") {
  std::map<std::string, int64_t> passwd = {{"alice", 1000}, {"root", 0}};
  AccountReporter reporter([&](const std::string& a) {
    auto it = passwd.find(a);
    return it == passwd.end() ? int64_t{-1} : it->second;
  });
  auto first = reporter.Check({"alice", "bob", "root"});
  REQUIRE(first.size() == 3);
  CHECK(first[0] == kiln::protocol::AccountUid{"alice", 1000});
  CHECK(first[1] == kiln::protocol::AccountUid{"bob", -1});
  CHECK(first[2] == kiln::protocol::AccountUid{"root", 0});
  CHECK(reporter.Recheck().empty());
  passwd["bob"] = 1001;  // useradd bob on this node
  passwd.erase("alice");
  auto changed = reporter.Recheck();
  REQUIRE(changed.size() == 2);
  CHECK(changed[0] == kiln::protocol::AccountUid{"alice", -1});
  CHECK(changed[1] == kiln::protocol::AccountUid{"bob", 1001});
  CHECK(reporter.Recheck().empty());
  CHECK(reporter.Known().size() == 3);
}

TEST_CASE("an account is resolved with its uid, gid and groups, and uid 0 needs the opt-in") {
  auto root = ResolveRunAs("root", true, "n1");
  REQUIRE(root.ok());
  CHECK(root->uid == 0);
  CHECK(root->home == "/root");
  auto refused = ResolveRunAs("root", false, "n1");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message() ==
        "Account: account root is uid 0 on node n1, and its user is not allowed root");
  auto missing = ResolveRunAs("kiln-no-such-account", false, "n1");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message() == "Account: node n1 has no account kiln-no-such-account");
  CHECK(LookUpUid("root") == 0);
  CHECK(LookUpUid("kiln-no-such-account") == -1);
  auto nobody = ResolveRunAs("nobody", false, "n1");
  REQUIRE(nobody.ok());
  CHECK(nobody->uid == 65534);
}

TEST_CASE("a process started as an account runs with its ids, no new privileges and a clean env") {
  REQUIRE(::geteuid() == 0);  // the suite runs as root (CI and the README's set-up)
  auto nobody = ResolveRunAs("nobody", false, "n1");
  REQUIRE(nobody.ok());
  const std::string dir = "/tmp/kiln-run-as-test-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/sub");
  std::ofstream(dir + "/sub/file") << "x";
  std::filesystem::create_symlink("/etc/passwd", dir + "/link");
  REQUIRE(GiveTree(dir, *nobody).ok());
  struct stat st;
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((dir + "/sub/file").c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  REQUIRE(::stat("/etc/passwd", &st) == 0);
  CHECK(st.st_uid == 0);  // the link was chowned, not what it points to

  ::setenv("KILN_AGENT_SECRET_TEST", "leaked", 1);
  const int agent_fd = ::open("/etc/hostname", O_RDONLY);  // no O_CLOEXEC, like std::ofstream's
  REQUIRE(agent_fd >= 3);
  auto group = ProcessGroup::Start(
      {"/bin/sh", "-c",
       "id -u; id -g; grep NoNewPrivs /proc/self/status; echo \"home=$HOME user=$USER\"; "
       "env | grep -c KILN_AGENT_SECRET_TEST; echo $KILN_JOB_VAR; cat /etc/shadow 2>&1 | head -1; "
       "[ -e /proc/self/fd/" +
           std::to_string(agent_fd) + " ] && echo fd-leaked || echo fd-closed"},
      {{"KILN_JOB_VAR", "given"}}, dir, "n1-1-1", &*nobody);
  ::unsetenv("KILN_AGENT_SECRET_TEST");
  ::close(agent_fd);
  REQUIRE(group.ok());
  std::vector<std::string> lines;
  bool eof = false;
  for (int i = 0; i < 500 && !eof; ++i) {
    for (auto& l : group->ReadLines(&eof)) lines.push_back(l);
    if (!eof) ::usleep(10000);
  }
  REQUIRE(lines.size() == 8);
  CHECK(lines[0] == "65534");
  CHECK(lines[1] == std::to_string(nobody->gid));
  CHECK(lines[2] == "NoNewPrivs:\t1");
  CHECK(lines[3] == "home=" + nobody->home + " user=nobody");
  CHECK(lines[4] == "0");  // nothing of the agent's environment but what CleanEnvironment passes
  CHECK(lines[5] == "given");
  CHECK(lines[6].find("Permission denied") != std::string::npos);
  CHECK(lines[7] == "fd-closed");  // none of the agent's descriptors reach the job
  std::filesystem::remove_all(dir);
}
