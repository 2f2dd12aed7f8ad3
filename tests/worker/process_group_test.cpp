#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "worker/agent/process_group.h"

using namespace kiln::agent;

namespace {

// Polls until the group's leader has exited (bounded: the commands below end by themselves or
// are killed).
ExitStatus WaitExit(ProcessGroup& group) {
  for (int i = 0; i < 1000; ++i) {
    if (auto s = group.TryReap()) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("process did not exit");
  return {};
}

}  // namespace

TEST_CASE("a process group's output arrives as lines and its exit code is reported") {
  auto group = ProcessGroup::Start({"sh", "-c", "echo one; echo two >&2; printf three; exit 3"},
                                   {}, "/tmp", "test-lines");
  REQUIRE(group.ok());
  ExitStatus status = WaitExit(*group);
  CHECK(status.exit_code == 3);
  bool eof = false;
  std::vector<std::string> lines;
  while (!eof) {
    for (auto& l : group->ReadLines(&eof)) lines.push_back(l);
  }
  CHECK(lines == std::vector<std::string>{"one", "two", "three"});
}

TEST_CASE("signalling the group stops every process in it, children included") {
  const std::string tag = "test-group-" + std::to_string(::getpid());
  auto group = ProcessGroup::Start({"sh", "-c", "sleep 60 & sleep 60 & wait"}, {}, "/tmp", tag);
  REQUIRE(group.ok());
  for (int i = 0; i < 200 && FindTagged(ExactTag(tag)).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(FindTagged(ExactTag(tag)).size() == 3);
  group->SignalGroup(SIGKILL);
  ExitStatus status = WaitExit(*group);
  CHECK(status.signal == SIGKILL);
  for (int i = 0; i < 200 && !FindTagged(ExactTag(tag)).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(FindTagged(ExactTag(tag)).empty());
}

TEST_CASE("a tagged process that left the group is still found and killed by its tag") {
  const std::string tag = "test-escape-" + std::to_string(::getpid());
  auto group = ProcessGroup::Start({"sh", "-c", "setsid sleep 60 & wait"}, {}, "/tmp", tag);
  REQUIRE(group.ok());
  // Wait until the child has left the group (setsid done), or the group's SIGKILL takes it too.
  auto escaped = [&] {
    for (pid_t pid : FindTagged(ExactTag(tag))) {
      if (::getpgid(pid) != group->pid() && ::getpgid(pid) > 0) return true;
    }
    return false;
  };
  for (int i = 0; i < 500 && !escaped(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(escaped());
  group->SignalGroup(SIGKILL);
  WaitExit(*group);
  CHECK(KillTagged(ExactTag(tag), SIGKILL) >= 1);
  for (int i = 0; i < 200 && !FindTagged(ExactTag(tag)).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(FindTagged(ExactTag(tag)).empty());
}

TEST_CASE("tag matchers parse node names that contain dashes from the right") {
  CHECK(AnyAttemptOfNode("node")("node-12-3"));
  CHECK_FALSE(AnyAttemptOfNode("node")("node-2-12-3"));  // node "node-2", job 12
  CHECK(AnyAttemptOfNode("node-2")("node-2-12-3"));
  CHECK_FALSE(AnyAttemptOfNode("node")("node-x-1"));
  CHECK(AnyAttemptOfJob("node-2", 12)("node-2-12-3"));
  CHECK_FALSE(AnyAttemptOfJob("node-2", 1)("node-2-12-3"));
  CHECK(RunTag("a-b", 4, 2) == "a-b-4-2");
}

TEST_CASE("the job's environment replaces inherited variables of the same name") {
  ::setenv("KILN_TEST_VAR", "inherited", 1);
  auto group = ProcessGroup::Start({"sh", "-c", "echo $KILN_TEST_VAR; env | grep -c ^KILN_TEST_VAR="},
                                   {{"KILN_TEST_VAR", "job"}}, "/tmp", "test-env");
  REQUIRE(group.ok());
  WaitExit(*group);
  bool eof = false;
  std::vector<std::string> lines;
  while (!eof) {
    for (auto& l : group->ReadLines(&eof)) lines.push_back(l);
  }
  CHECK(lines == std::vector<std::string>{"job", "1"});
  ::unsetenv("KILN_TEST_VAR");
}
