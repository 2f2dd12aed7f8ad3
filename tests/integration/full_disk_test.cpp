// A full disk under the scheduler's state: changes are refused with an error that says why,
// reads are still served, the daemon neither exits nor restarts, and once space is freed it
// accepts changes again by itself. The state dir is moved onto a small tmpfs of the test's own
// (mounted by the test, as root) and filled up.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/integration/local_cluster.h"

using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::RunCommand;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

// A tmpfs mounted over `dir` for the test's lifetime, its files copied in first.
class SmallDisk {
 public:
  explicit SmallDisk(std::string dir) : dir_(std::move(dir)) {
    const std::string saved = dir_ + ".saved";
    REQUIRE(RunCommand({"cp", "-a", dir_, saved}).exit_code == 0);
    auto mounted = RunCommand({"mount", "-t", "tmpfs", "-o", "size=160m", "kiln-test-disk", dir_});
    INFO(mounted.err);
    REQUIRE(mounted.exit_code == 0);
    mounted_ = true;
    REQUIRE(RunCommand({"cp", "-a", saved + "/.", dir_ + "/"}).exit_code == 0);
  }
  ~SmallDisk() {
    if (mounted_) RunCommand({"umount", "-l", dir_});
  }
  // Writes a file until the disk has no room left.
  void Fill() {
    RunCommand({"dd", "if=/dev/zero", "of=" + dir_ + "/filler", "bs=1M", "count=1000"}, 120);
  }
  void Free() { std::filesystem::remove(dir_ + "/filler"); }

 private:
  std::string dir_;
  bool mounted_ = false;
};

}  // namespace

TEST_CASE(
    "a full disk refuses changes with a clear error while reads are served, and the "
    "scheduler takes changes again once space is freed, without a restart") {
  LocalCluster cluster(/*slots=*/2);
  const int64_t done = cluster.Submit(SyntheticSpec("before", 1, 1, 320));
  REQUIRE(cluster.WaitForJob(
              done, [](const json& j) { return j["state"] == "COMPLETED"; }, 120)["state"] ==
          "COMPLETED");

  cluster.StopScheduler();
  SmallDisk disk(cluster.state_dir());
  cluster.StartScheduler();
  const pid_t scheduler = cluster.scheduler_pid();
  disk.Fill();

  // A change is refused, saying why and that nothing was done.
  auto refused = cluster.Kiln({"submit", cluster.WriteSpec(SyntheticSpec("during", 1, 1, 320))});
  INFO(refused.out << refused.err);
  CHECK(refused.exit_code != 0);
  CHECK(Contains(refused.err, "full"));
  CHECK(Contains(refused.err, "nothing of this request was done"));
  auto cancel = cluster.Kiln({"hold", std::to_string(done)});
  CHECK(cancel.exit_code != 0);

  // Reads are served: queue, show, logs, nodes, checkpoints (listed and pulled).
  auto queue = cluster.Kiln({"queue", "--all"});
  CHECK(queue.exit_code == 0);
  CHECK(Contains(queue.out, "before"));
  CHECK(cluster.Show(done)["state"] == "COMPLETED");
  CHECK(cluster.Kiln({"logs", std::to_string(done)}).exit_code == 0);
  CHECK(cluster.Kiln({"nodes"}).exit_code == 0);
  auto pulled =
      cluster.Kiln({"ckpt", "pull", std::to_string(done), "-o", cluster.dir() + "/pulled"});
  INFO(pulled.out << pulled.err);
  CHECK(pulled.exit_code == 0);

  // The same daemon all along, and its log says what is wrong and where.
  CHECK(cluster.scheduler_pid() == scheduler);
  CHECK(::kill(scheduler, 0) == 0);
  const std::string log = kiln::testing::Slurp(cluster.dir() + "/scheduler.log");
  CHECK(Contains(log, "cannot write the database in " + cluster.state_dir()));

  // Space freed: changes are taken again, by the same process, and the worker is still up.
  disk.Free();
  int64_t after = 0;
  REQUIRE(WaitFor(
      [&] {
        auto r = cluster.Kiln({"submit", cluster.WriteSpec(SyntheticSpec("after", 1, 1, 320))});
        if (r.exit_code != 0) return false;
        after = std::stoll(r.out);
        return true;
      },
      20));
  CHECK(cluster.WaitForJob(
            after, [](const json& j) { return j["state"] == "COMPLETED"; }, 120)["state"] ==
        "COMPLETED");
  CHECK(cluster.scheduler_pid() == scheduler);
  CHECK(Contains(kiln::testing::Slurp(cluster.dir() + "/scheduler.log"),
                 "can be written again: accepting changes"));
  cluster.StopScheduler();
}
