// A single-node attempt's ranks run on CPUs of their own (the agent hands them out, each rank
// binds itself before it starts a thread), and a node without enough free CPUs runs the next
// attempt unpinned rather than not at all.
#include <sched.h>

#include <catch2/catch.hpp>
#include <vector>

#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::ProcFile;
using kiln::testing::RankProcess;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

// "Cpus_allowed_list" of /proc/PID/status, e.g. "0" or "0-1".
std::string AllowedCpus(pid_t pid) {
  const std::string status = ProcFile(pid, "status");
  const std::string key = "Cpus_allowed_list:";
  const auto at = status.find(key);
  if (at == std::string::npos) return "";
  const auto end = status.find('\n', at);
  std::string value = status.substr(at + key.size(), end - at - key.size());
  value.erase(0, value.find_first_not_of(" \t"));
  return value;
}

// The CPUs this process (and so the agent it starts) may use.
std::vector<int> CpusOfThisMachine() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  std::vector<int> ids;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) ids.push_back(c);
  }
  return ids;
}

}  // namespace

TEST_CASE(
    "each rank of a single-node attempt is pinned to a CPU of its own, and an attempt that "
    "finds no free CPUs runs unpinned") {
  const std::vector<int> cpus = CpusOfThisMachine();
  REQUIRE(cpus.size() >= 2);
  LocalCluster cluster(/*slots=*/4, /*worker_timeout_s=*/30.0, /*with_worker=*/false);
  cluster.StartWorkerWith({"--pin-cpus"});
  json spec = SyntheticSpec("pinned", 2, 100000, 4096);  // hours: far longer than the test
  spec["resources"]["cpus_per_rank"] = 1;
  const int64_t pinned = cluster.Submit(spec);
  REQUIRE(cluster.WaitForJob(
              pinned,
              [](const json& j) {
                return j.value("state", "") != "RUNNING" || j["metrics"].value("step", 0) > 20;
              },
              120)["state"] == "RUNNING");
  const std::string run_dir =
      cluster.dir() + "/work/jobs/" + std::to_string(pinned) + "/attempt-1/";
  pid_t rank0 = 0, rank1 = 0;
  REQUIRE(WaitFor(
      [&] {
        rank0 = RankProcess(run_dir, 0);
        rank1 = RankProcess(run_dir, 1);
        return rank0 != 0 && rank1 != 0;
      },
      10));
  const std::string cpus0 = AllowedCpus(rank0);
  const std::string cpus1 = AllowedCpus(rank1);
  INFO("rank 0: " << cpus0 << ", rank 1: " << cpus1);
  CHECK(cpus0 == std::to_string(cpus[0]));
  CHECK(cpus1 == std::to_string(cpus[1]));

  // Only this machine's other CPUs (none on 2) are left: the next attempt floats over all.
  json other = SyntheticSpec("unpinned", 2, 100000, 4096);
  const int64_t floating = cluster.Submit(other);
  if (cpus.size() == 2) {
    REQUIRE(cluster.WaitForJob(
                floating,
                [](const json& j) {
                  return j.value("state", "") != "RUNNING" || j["metrics"].value("step", 0) > 5;
                },
                120)["state"] == "RUNNING");
    const std::string other_dir =
        cluster.dir() + "/work/jobs/" + std::to_string(floating) + "/attempt-1/";
    pid_t r0 = 0;
    REQUIRE(WaitFor([&] { return (r0 = RankProcess(other_dir, 0)) != 0; }, 10));
    const std::string all = AllowedCpus(r0);
    INFO("unpinned rank 0: " << all);
    CHECK(all != std::to_string(cpus[0]));
    CHECK(all != std::to_string(cpus[1]));
    CHECK(all.find_first_of("-,") != std::string::npos);
  }
  for (const int64_t id : {pinned, floating}) {
    const auto cancel = cluster.Kiln({"cancel", std::to_string(id)});
    INFO("cancel " << id << ": " << cancel.out << cancel.err << "\nshow: "
                   << cluster.Kiln({"show", std::to_string(id)}).out);
    CHECK(cancel.exit_code == 0);
  }
}
