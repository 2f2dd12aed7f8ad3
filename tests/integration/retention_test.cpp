// Retention end to end: a scheduler told to keep little prunes a finished job's logs and events,
// old audit rows and an abandoned upload, and a worker its run dir; never a running job's.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "common/file_util.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

TEST_CASE("a finished job's logs, events and run dir, old audit rows and abandoned uploads are "
          "pruned, a running job's are not") {
  LocalCluster cluster(2);
  const std::string part =
      cluster.state_dir() + "/checkpoints/uploads/" + std::string(64, 'a') + ".part";
  REQUIRE(kiln::WriteFileAtomic(part, "half an upload").ok());
  struct utimbuf old_times {100, 100};  // untouched since 1970
  REQUIRE(::utime(part.c_str(), &old_times) == 0);
  cluster.StopScheduler();
  // Long enough to see the finished job's logs first on a loaded machine, short enough to wait.
  cluster.SetSchedulerArgs({"--keep-logs", "8", "--keep-events", "8", "--keep-audit", "8",
                            "--keep-uploads", "3600"});
  cluster.StartScheduler();
  cluster.RestartWorkerWith({"--keep-run-dirs", "2"});

  const int64_t done = cluster.Submit(SyntheticSpec("short", 1, 1, 64));
  json job = cluster.WaitForJob(done, [](const json& j) { return j["state"] == "COMPLETED"; }, 60);
  REQUIRE(job["state"] == "COMPLETED");
  REQUIRE_FALSE(job["events"].empty());
  REQUIRE_FALSE(cluster.Kiln({"logs", std::to_string(done)}).out.empty());
  const int64_t running = cluster.Submit(SyntheticSpec("long", 1, 100000, 4096));
  REQUIRE(cluster.WaitForJob(running, [](const json& j) { return j["state"] == "RUNNING"; }, 30)
              ["state"] == "RUNNING");

  CHECK(WaitFor([&] { return cluster.Show(done).value("events", json::array()).empty(); }, 20));
  CHECK(cluster.Kiln({"logs", std::to_string(done)}).out.empty());
  CHECK(cluster.Show(done)["state"] == "COMPLETED");  // the job itself stays
  CHECK_FALSE(cluster.Show(running)["events"].empty());
  CHECK_FALSE(cluster.Kiln({"logs", std::to_string(running)}).out.empty());
  CHECK(::access(part.c_str(), F_OK) != 0);  // abandoned: removed
  // The worker removes the finished attempt's run dir, never the running one's.
  const std::string jobs = cluster.dir() + "/work/jobs/";
  CHECK(WaitFor([&] {
    return ::access((jobs + std::to_string(done) + "/attempt-1").c_str(), F_OK) != 0;
  }, 20));
  CHECK(::access((jobs + std::to_string(running) + "/attempt-1/spec.json").c_str(), F_OK) == 0);
  // The audit rows of the submits are older than 8 s by now, and pruned too.
  CHECK(WaitFor([&] {
    json rows = json::parse(cluster.Admin({"audit", "--json"}).out, nullptr, false);
    for (const auto& r : rows) {
      if (r.value("action", "") == "submit" && r.value("target", "") == "job " +
                                                                             std::to_string(done)) {
        return false;
      }
    }
    return true;
  }, 20));
  CHECK(cluster.Kiln({"cancel", std::to_string(running)}).exit_code == 0);
}
