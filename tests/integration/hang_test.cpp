// The agent's watchdogs. Hang detection: a rank that stops making steps (SIGSTOP here; a deadlock
// or a lost peer in production) fails its attempt with a reason naming the rank, the node and the
// last step, and the job resumes from its checkpoint like after any other failure. Memory: a rank
// over resources.memory_per_rank is killed, and the job fails with OutOfMemory, not retried.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::ProcFile;
using kiln::testing::RankProcess;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

bool Gone(pid_t pid) {
  const std::string stat = ProcFile(pid, "stat");
  return stat.empty() || stat.find(") Z ") != std::string::npos;
}

}  // namespace

TEST_CASE("a rank that makes no step for the stall timeout fails its attempt with a reason naming "
          "it, and the job resumes from its checkpoint") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/30.0);
  json spec = SyntheticSpec("hangs", 2, 2000, 1024);  // far more steps than the test waits for
  spec["train"]["stall_timeout_s"] = 3;
  spec["checkpoint"]["every_steps"] = 100;
  spec["max_retries"] = 1;
  const int64_t id = cluster.Submit(spec);
  json running = cluster.WaitForJob(id, [](const json& j) {
    return j.value("state", "") == "RUNNING" && j["metrics"].value("step", 0) > 300;
  }, 120);
  REQUIRE(running["metrics"].value("step", 0) > 300);
  const std::string run_dir_part =
      cluster.dir() + "/work/jobs/" + std::to_string(id) + "/attempt-1/";
  pid_t rank1 = 0;
  REQUIRE(WaitFor([&] { return (rank1 = RankProcess(run_dir_part, 1)) != 0; }, 10));
  REQUIRE(::kill(rank1, SIGSTOP) == 0);

  json job = cluster.WaitForJob(id, [](const json& j) { return j.value("attempt", 0) >= 2; }, 60);
  INFO(job.dump(2));
  REQUIRE(job["attempt"] == 2);
  const std::string reason = job["attempts"][0]["reason"];
  CHECK(reason.find("Stalled: rank 1 on " + cluster.worker_name() + " made no step for ") !=
        std::string::npos);
  CHECK(reason.find(" after step ") != std::string::npos);
  CHECK(job["attempts"][1]["resumed_from_step"].get<int64_t>() >= 300);
  // The stopped rank did not outlive its attempt.
  CHECK(WaitFor([&] { return Gone(rank1); }, 10));
  CHECK(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}

TEST_CASE("a rank over memory_per_rank is killed: the job fails with OutOfMemory naming the rank, "
          "node and size, is not retried, and leaves no process") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/30.0);
  json spec = SyntheticSpec("greedy", 2, 2000, 1024);
  spec["resources"]["memory_per_rank"] = "48MiB";  // LibTorch alone takes more
  spec["max_retries"] = 2;
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, [](const json& j) {
    return j.value("state", "") == "FAILED" || j.value("state", "") == "COMPLETED";
  }, 120);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "FAILED");
  CHECK(job["attempt"] == 1);  // not retried
  const std::string reason = job["reason"];
  CHECK(reason.find("OutOfMemory: rank ") != std::string::npos);
  CHECK(reason.find(" on node " + cluster.worker_name() + " used ") != std::string::npos);
  CHECK(reason.find(", over memory_per_rank 48.0 MiB") != std::string::npos);
  const std::string jobs_dir = cluster.dir() + "/work/jobs/" + std::to_string(id) + "/";
  CHECK(WaitFor([&] { return RankProcess(jobs_dir, 0) == 0 && RankProcess(jobs_dir, 1) == 0; },
                10));
}
