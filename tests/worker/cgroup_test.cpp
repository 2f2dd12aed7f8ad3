// The cgroup v2 pieces that can be checked without a delegated cgroup (tests must not write into
// this machine's own hierarchy): parsing /proc/self/cgroup and memory.events, the OutOfMemory
// reason, the refusal of a folder that is not cgroup2, and a child joining a cgroup through the
// cgroup.procs descriptor before it runs anything.
#include "worker/agent/cgroup.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/file_util.h"
#include "worker/agent/process_group.h"

using namespace kiln::agent;

TEST_CASE("the agent's own cgroup folder is read from the v2 line of /proc/self/cgroup") {
  auto own = OwnCgroupFolder("0::/system.slice/kiln-worker.service\n");
  REQUIRE(own.ok());
  CHECK(*own == "/sys/fs/cgroup/system.slice/kiln-worker.service");
  // A hybrid system lists v1 controllers first.
  auto hybrid = OwnCgroupFolder("12:memory:/x\n1:name=systemd:/y\n0::/user.slice/u\n", "/m");
  REQUIRE(hybrid.ok());
  CHECK(*hybrid == "/m/user.slice/u");
  auto root = OwnCgroupFolder("0::/\n", "/m");  // the root cgroup is never a delegated one
  REQUIRE_FALSE(root.ok());
  CHECK(root.status().message().find("Delegate=yes") != std::string::npos);
  auto v1 = OwnCgroupFolder("4:memory:/x\n");
  REQUIRE_FALSE(v1.ok());
  CHECK(v1.status().message().find("cgroup v2") != std::string::npos);
}

TEST_CASE("memory.events gives the number of OOM kills, and the reason names ranks and sizes") {
  CHECK(LimitOomKillsIn("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n") == 1);
  CHECK(LimitOomKillsIn("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n") == 0);
  CHECK(LimitOomKillsIn("") == 0);
  CHECK(LimitOomKillsIn("garbage") == 0);
  // Killed by the node's own OOM (the cgroup never reached its limit): not the job's doing.
  CHECK(LimitOomKillsIn("low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n") == 0);
  CHECK(CgroupOomReason(2, int64_t{4} << 30, 7, "w1") ==
        "OutOfMemory: the 2 ranks of job 7 on node w1 reached their cgroup's memory.max of "
        "8.0 GiB (memory_per_rank 4.0 GiB each); the kernel killed the attempt");
  CHECK(CgroupOomReason(1, 512 << 20, 3, "n").find("the 1 rank of job 3") != std::string::npos);
}

TEST_CASE("the agent's cgroup option refuses a folder that is not a cgroup v2 folder, or none at all") {
  char pattern[] = "/tmp/kiln-cgroup-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  auto plain = DelegatedCgroup::Open(dir);
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.status().message().find("not a cgroup v2 folder") != std::string::npos);
  auto missing = DelegatedCgroup::Open(dir + "/nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("not a folder") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a started process writes itself into the cgroup.procs it was given before it runs") {
  char pattern[] = "/tmp/kiln-cgroup-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string procs = dir + "/cgroup.procs";  // a plain file stands in for the cgroup's
  ::close(::open(procs.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto group =
      ProcessGroup::Start({"/bin/sh", "-c", "exit 0"}, {}, dir, "cgroup-test", nullptr, fd);
  ::close(fd);
  REQUIRE(group.ok());
  std::optional<ExitStatus> exit;
  for (int i = 0; i < 500 && !exit; ++i) {
    exit = group->TryReap();
    if (!exit) ::usleep(10000);
  }
  REQUIRE(exit);
  CHECK(exit->exit_code == 0);
  CHECK(*kiln::ReadFile(procs) == "0");  // "0": the writing process itself
  std::filesystem::remove_all(dir);
}
