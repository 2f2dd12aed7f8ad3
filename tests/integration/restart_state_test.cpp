// A scheduler killed with -9 and restarted continues each job exactly as it would have without the
// restart: what each attempt holds, resumes from, and waits for is rebuilt from the database
// (the placements table), and a launch lost with the old process is sent again. The workers are
// fake (RawClient), so that each step of a job's life can be held still across the restart.
#include <catch2/catch.hpp>

#include <memory>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using kiln::testing::RawClient;
using kiln::testing::SyntheticSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

// Registers (again, after a restart) as `name`, reporting `running`.
void Register(RawClient& worker, const std::string& name, std::vector<RunningAttempt> running,
              int64_t gpus = 0) {
  worker.Send(Encode(AsRootAgent(RegisterWorker{name, 2, 1 << 30, gpus, running, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 10000));
}

void RestartScheduler(LocalCluster& cluster) {
  cluster.KillScheduler();
  cluster.StartScheduler();
}

// Waits for a launch of `job_id` (skipping others); nullopt if none comes in timeout_ms.
std::optional<Envelope> ExpectLaunch(RawClient& worker, int64_t job_id, int timeout_ms,
                                     const std::string& heartbeat_as = "",
                                     std::vector<RunningAttempt> running = {}) {
  for (int waited = 0; waited < timeout_ms; waited += 250) {
    if (!heartbeat_as.empty()) worker.Send(Encode(Heartbeat{heartbeat_as, running}));
    auto launch = worker.Expect("launch", 250);
    if (launch && launch->first.body["job_id"] == job_id) return launch->first;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("after a scheduler restart a worker may still fetch the checkpoint its attempt "
          "resumes from") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  Register(worker, "fake", {});
  json spec = SyntheticSpec("resumes", 1, 1, 64);
  spec["max_retries"] = 1;
  const int64_t id = cluster.Submit(spec);
  REQUIRE(ExpectLaunch(worker, id, 5000));
  worker.Send(Encode(Heartbeat{"fake", {{id, 1}}}));
  // Attempt 1 saves a checkpoint at step 10, then fails: attempt 2 resumes from it.
  const std::string bytes(3000, 'c');
  const std::string sha = kiln::Sha256Hex(bytes);
  worker.Send(Encode(CheckpointBegin{id, 1, 10, 0, json::object(), 3000, sha, std::nullopt}));
  REQUIRE(worker.Expect("ckpt_offset", 5000));
  worker.Send(Encode(CheckpointChunk{sha, 0}, "", {bytes}));
  auto done = worker.Expect("ckpt_done", 5000);
  REQUIRE(done);
  REQUIRE(done->first.body["ok"] == true);
  worker.Send(Encode(JobExited{id, 1, 1, 0, "rank 0 failed", {}, {}, {}}));
  auto second = ExpectLaunch(worker, id, 5000);
  REQUIRE(second);
  REQUIRE(second->body["attempt"] == 2);
  REQUIRE(second->body["resume_step"] == 10);
  worker.Send(Encode(Heartbeat{"fake", {{id, 2}}}));
  REQUIRE(cluster.WaitForJob(id, [](const json& j) { return j["attempt"] == 2; }, 10)["state"] ==
          "RUNNING");

  RestartScheduler(cluster);
  worker.Send(Encode(Heartbeat{"fake", {{id, 2}}}));
  REQUIRE(worker.Expect("reregister", 10000));
  Register(worker, "fake", {{id, 2}});
  // The agent of attempt 2 fetches the checkpoint now (it was still downloading).
  worker.Send(Encode(CheckpointRead{id, 10, 0, 3000}));
  auto read = worker.ExpectAnyOf({"ckpt_data", "error"}, 10000);
  REQUIRE(read);
  INFO(read->first.body.dump());
  CHECK(read->first.type == "ckpt_data");
  REQUIRE(read->second.size() == 2);
  CHECK(read->second[1] == bytes);
  json job = cluster.Show(id);
  CHECK(job["state"] == "RUNNING");
  CHECK(job["attempt"] == 2);
}

TEST_CASE("a launch lost with a killed scheduler is sent again by the restarted one, using no "
          "retry") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  Register(worker, "fake", {});
  const int64_t id = cluster.Submit(SyntheticSpec("lost-launch", 1, 1, 64));  // max_retries 0
  REQUIRE(ExpectLaunch(worker, id, 5000));  // "lost": the worker does nothing with it

  RestartScheduler(cluster);
  worker.Send(Encode(Heartbeat{"fake", {}}));
  REQUIRE(worker.Expect("reregister", 10000));
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  auto again = ExpectLaunch(worker, id, 10000, "fake");
  REQUIRE(again);
  CHECK(again->body["attempt"] == 1);
  CHECK(cluster.Show(id)["state"] == "RUNNING");
  worker.Send(Encode(Heartbeat{"fake", {{id, 1}}}));
  worker.Send(Encode(JobExited{id, 1, 0, 0, "", {}, {}, {}}));
  json job = cluster.WaitForJob(id, [](const json& j) { return j["state"] == "COMPLETED"; }, 10);
  CHECK(job["state"] == "COMPLETED");
  CHECK(job["attempt"] == 1);
}

TEST_CASE("a requeued job still waits for its stop checkpoint after a scheduler restart") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient a(cluster, /*as_worker=*/true);
  Register(a, "node-a", {});
  const int64_t id = cluster.Submit(SyntheticSpec("requeued", 1, 1, 64));
  REQUIRE(ExpectLaunch(a, id, 5000));
  a.Send(Encode(Heartbeat{"node-a", {{id, 1}}}));
  auto drained = cluster.Kiln({"node", "drain", "node-a", "--requeue"});
  REQUIRE(drained.exit_code == 0);
  REQUIRE(cluster.WaitForJob(id, [](const json& j) { return j["state"] == "PENDING"; },
                             10)["state"] == "PENDING");

  RestartScheduler(cluster);
  a.Send(Encode(Heartbeat{"node-a", {{id, 1}}}));
  REQUIRE(a.Expect("reregister", 10000));
  Register(a, "node-a", {{id, 1}});  // its ranks are still saving their checkpoint
  RawClient b(cluster, /*as_worker=*/true);
  Register(b, "node-b", {});
  // Held until node-a reports attempt 1's exit: no launch on node-b meanwhile.
  CHECK_FALSE(ExpectLaunch(b, id, 3000, "node-b"));
  json job = cluster.Show(id);
  CHECK(job["state"] == "PENDING");
  CHECK(job["reason"].get<std::string>().find("attempt 1 is still stopping on node-a") !=
        std::string::npos);
  a.Send(Encode(JobExited{id, 1, 143, 0, "stopped on SIGTERM", {}, {}, {}}));
  auto launched = ExpectLaunch(b, id, 10000, "node-b");
  REQUIRE(launched);
  CHECK(launched->body["attempt"] == 2);
}

TEST_CASE("after a scheduler restart an attempt still stopping keeps its GPU until it is gone") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  Register(worker, "gpu-node", {}, /*gpus=*/1);
  json spec = SyntheticSpec("first", 1, 1, 64);
  spec["resources"]["gpus_per_rank"] = 1;
  const int64_t first = cluster.Submit(spec);
  REQUIRE(ExpectLaunch(worker, first, 5000));
  worker.Send(Encode(Heartbeat{"gpu-node", {{first, 1}}}));
  REQUIRE(cluster.Kiln({"cancel", std::to_string(first)}).exit_code == 0);

  RestartScheduler(cluster);
  worker.Send(Encode(Heartbeat{"gpu-node", {{first, 1}}}));
  REQUIRE(worker.Expect("reregister", 10000));
  Register(worker, "gpu-node", {{first, 1}}, /*gpus=*/1);  // its rank ignores SIGTERM for now
  spec["name"] = "second";
  const int64_t second = cluster.Submit(spec);
  // GPU 0 is still taken by the first job's attempt.
  CHECK_FALSE(ExpectLaunch(worker, second, 3000, "gpu-node", {{first, 1}}));
  CHECK(cluster.Show(second)["state"] == "PENDING");
  worker.Send(Encode(JobExited{first, 1, 137, 9, "killed", {}, {}, {}}));
  auto launched = ExpectLaunch(worker, second, 10000, "gpu-node");
  REQUIRE(launched);
  CHECK(launched->body["gpu_ids"] == json::array({0}));
}

TEST_CASE("a gang whose member failed is placed again only once its other nodes' part is gone, so "
          "that it never runs two attempts at once") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  std::vector<std::unique_ptr<RawClient>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<RawClient>(cluster, /*as_worker=*/true));
    const std::string n = std::to_string(i + 1);
    workers[i]->Send(Encode(AsRootAgent(RegisterWorker{
        "gang-" + n, 1, 1 << 30, 0, {}, {}, "10.9.0." + n, "tcp://10.9.0." + n + ":7071"})));
    REQUIRE(workers[i]->Expect("register_ack", 5000));
  }
  json spec = SyntheticSpec("pair", 2, 1, 64);
  spec["resources"]["ranks_per_node"] = 1;
  spec["max_retries"] = 1;
  const int64_t id = cluster.Submit(spec);
  // Two of the three get attempt 1; the first host named in the launch leads.
  std::vector<int> placed;
  std::string leader;
  for (int i = 0; i < 3; ++i) {
    if (auto launch = workers[i]->Expect("launch", placed.size() < 2 ? 3000 : 500)) {
      placed.push_back(i);
      leader = launch->first.body["hosts"][0]["node"];
    }
  }
  REQUIRE(placed.size() == 2);
  const int lead = "gang-" + std::to_string(placed[0] + 1) == leader ? placed[0] : placed[1];
  const int member = lead == placed[0] ? placed[1] : placed[0];
  const int spare = 3 - placed[0] - placed[1];
  for (int i : placed) {
    workers[i]->Send(Encode(Heartbeat{"gang-" + std::to_string(i + 1), {{id, 1}}}));
  }
  // The member's part fails; the leader's ranks are still stopping.
  workers[member]->Send(Encode(JobExited{id, 1, 1, 0, "orted failed", {}, {}, {}}));
  REQUIRE(workers[lead]->Expect("kill", 5000));
  REQUIRE(cluster.WaitForJob(id, [](const json& j) { return j["state"] == "PENDING"; }, 10)
              ["state"] == "PENDING");
  const std::string lead_name = "gang-" + std::to_string(lead + 1);
  for (int t = 0; t < 12; ++t) {  // 3 s: attempt 2 goes nowhere meanwhile
    workers[lead]->Send(Encode(Heartbeat{lead_name, {{id, 1}}}));
    CHECK_FALSE(workers[member]->Expect("launch", 125));
    CHECK_FALSE(workers[spare]->Expect("launch", 125));
  }
  CHECK(cluster.Show(id)["reason"].get<std::string>().find("attempt 1 is still stopping on " +
                                                           lead_name) != std::string::npos);
  workers[lead]->Send(Encode(JobExited{id, 1, 137, 9, "killed", {}, {}, {}}));
  bool relaunched = false;
  for (int t = 0; t < 40 && !relaunched; ++t) {
    for (int i = 0; i < 3 && !relaunched; ++i) {
      relaunched = workers[i]->Expect("launch", 100).has_value();
    }
  }
  CHECK(relaunched);
  CHECK(cluster.Show(id)["attempt"] == 2);
}
