// The scheduling policy through the real daemon: priorities, holds, admin changes, dependencies,
// time limits, GPU assignment, labels and drained nodes, driven with the real CLI.
#include <catch2/catch.hpp>

#include "tests/integration/local_cluster.h"

using namespace kiln::testing;
using nlohmann::json;

namespace {

bool StateIs(const json& job, const std::string& state) { return job.value("state", "") == state; }
bool ReasonStarts(const json& job, const std::string& prefix) {
  return job.value("reason", "").rfind(prefix, 0) == 0;
}
json Long(const std::string& name) { return SyntheticSpec(name, 2, 100000, 4096); }
json Short(const std::string& name, int ranks = 2) { return SyntheticSpec(name, ranks, 1, 128); }

// A job that runs until stopped, whose only checkpoint is the one a graceful stop saves. Its
// steps are bigger than the synthetic default, so a step (which the stop waits for) takes
// milliseconds.
json StoppableSpec(const std::string& name) {
  json spec = SyntheticSpec(name, 2, 100000, 16384);
  spec["model"]["hidden"] = {512, 512};
  spec["train"]["batch_size"] = 256;
  spec["checkpoint"] = {{"every_steps", 1000000}, {"keep_last", 2}};
  return spec;
}

}  // namespace

TEST_CASE("priority decides who goes first, held jobs wait, an admin can reorder and release") {
  LocalCluster cluster(/*slots=*/2);
  const int64_t blocker = cluster.Submit(Long("blocker"));
  cluster.WaitForJob(blocker, [](const json& j) { return StateIs(j, "RUNNING"); }, 20);
  const int64_t low = cluster.Submit(Short("low"));
  json high_spec = Short("high");
  high_spec["priority"] = 5;
  const int64_t high = cluster.Submit(high_spec);
  auto held = cluster.Kiln({"submit", "--hold", cluster.WriteSpec(Short("held"), "held.json")});
  REQUIRE(held.exit_code == 0);
  const int64_t held_id = std::stoll(held.out);

  json low_view = cluster.WaitForJob(low, [&](const json& j) {
    return ReasonStarts(j, "Priority: behind job " + std::to_string(high));
  }, 10);
  CHECK(ReasonStarts(low_view, "Priority:"));
  CHECK(ReasonStarts(cluster.Show(high), "Resources: needs 2 ranks"));
  CHECK(ReasonStarts(cluster.Show(held_id), "Held:"));
  CHECK(cluster.Show(held_id)["held"] == true);

  // The admin raises the low job above the high one: now it is the one at the head.
  auto raised = cluster.Kiln({"priority", std::to_string(low), "10"});
  REQUIRE(raised.exit_code == 0);
  CHECK(raised.out.find("priority 10") != std::string::npos);
  cluster.WaitForJob(high, [&](const json& j) {
    return ReasonStarts(j, "Priority: behind job " + std::to_string(low));
  }, 10);

  REQUIRE(cluster.Kiln({"cancel", std::to_string(blocker)}).exit_code == 0);
  json low_done = cluster.WaitForJob(low, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  json high_done = cluster.WaitForJob(high, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  CHECK(low_done.value("started_at", 0) <= high_done.value("started_at", 0));
  CHECK(StateIs(cluster.Show(held_id), "PENDING"));  // still held

  CHECK(cluster.Kiln({"hold", std::to_string(high)}).exit_code == 1);  // finished: refused
  REQUIRE(cluster.Kiln({"release", std::to_string(held_id)}).exit_code == 0);
  cluster.WaitForJob(held_id, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
}

TEST_CASE("dependencies: a job starts after its dependency completes, and fails if it cannot") {
  LocalCluster cluster(/*slots=*/2);
  const int64_t first = cluster.Submit(Short("first"));
  json after_spec = Short("after");
  after_spec["depends_on"] = {first};
  const int64_t after = cluster.Submit(after_spec);
  json done = cluster.WaitForJob(after, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  CHECK(done.value("started_at", 0) >= cluster.Show(first).value("finished_at", 0));

  auto doomed = cluster.Kiln({"submit", "--hold", cluster.WriteSpec(Short("doomed"), "d.json")});
  const int64_t doomed_id = std::stoll(doomed.out);
  REQUIRE(cluster.Kiln({"cancel", std::to_string(doomed_id)}).exit_code == 0);
  json orphan_spec = Short("orphan");
  orphan_spec["depends_on"] = {doomed_id};
  const int64_t orphan = cluster.Submit(orphan_spec);
  json failed = cluster.WaitForJob(orphan, [](const json& j) { return StateIs(j, "FAILED"); }, 10);
  CHECK(failed.value("reason", "") == "DependencyFailed: job " + std::to_string(doomed_id) +
                                          " ended CANCELLED, so this job can never run");

  json unknown = Short("unknown");
  unknown["depends_on"] = {999};
  auto refused = cluster.Kiln({"submit", cluster.WriteSpec(unknown, "u.json")});
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("depends_on[0]: no job with id 999") != std::string::npos);
}

TEST_CASE("a job past its time_limit is stopped and FAILED with TIMEOUT") {
  LocalCluster cluster(/*slots=*/2);
  json spec = Long("slow");
  spec["time_limit"] = "2s";
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, [](const json& j) { return StateIs(j, "FAILED"); }, 30);
  CHECK(job.value("reason", "") == "TIMEOUT: ran past its time_limit of 2s; stopped");
  CHECK(job.value("time_limit_s", 0) == 2);
  // Its ranks are stopped: the node's slots come back.
  CHECK(WaitFor([&] {
    json nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out, nullptr, false);
    return nodes.is_array() && !nodes.empty() && nodes[0].value("used_slots", -1) == 0;
  }, 15));
}

TEST_CASE("GPUs are assigned by index and each rank sees only its own, labels and per-rank "
          "needs are checked") {
  LocalCluster cluster(/*slots=*/2);
  cluster.RestartWorkerWith({"--gpus", "2", "--label", "nvme"});
  json spec = Short("gpus");
  spec["resources"]["gpus_per_rank"] = 1;
  spec["resources"]["labels"] = {"nvme"};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  REQUIRE(job["allocation"].size() == 1);
  CHECK(job["allocation"][0]["gpu_ids"] == json::array({0, 1}));
  auto logs = cluster.Kiln({"logs", std::to_string(id)});
  CHECK(logs.out.find("CUDA_VISIBLE_DEVICES=0\n") != std::string::npos);
  CHECK(logs.out.find("CUDA_VISIBLE_DEVICES=1\n") != std::string::npos);
  // This LibTorch is a CPU build: the job says so and trains on the CPU rather than failing.
  CHECK(logs.out.find("sees no CUDA device") != std::string::npos);
  CHECK(logs.out.find("on cpu\n") != std::string::npos);

  json ib = Short("ib", 1);
  ib["resources"]["labels"] = {"ib"};
  const int64_t ib_id = cluster.Submit(ib);
  json big = Short("big", 1);
  big["resources"]["gpus_per_rank"] = 4;
  const int64_t big_id = cluster.Submit(big);
  cluster.WaitForJob(ib_id, [](const json& j) { return ReasonStarts(j, "Infeasible"); }, 10);
  CHECK(cluster.Show(ib_id)["reason"] == "Infeasible: no up node has labels [ib]");
  CHECK(cluster.Show(big_id)["reason"] ==
        "Infeasible: needs 4 GPUs per rank, largest node has 2");
}

TEST_CASE("a drained node takes no new jobs until it is resumed") {
  LocalCluster cluster(/*slots=*/2);
  auto drained = cluster.Kiln({"node", "drain", cluster.worker_name(), "--reason", "disk swap"});
  REQUIRE(drained.exit_code == 0);
  CHECK(drained.out.find("DRAINED") != std::string::npos);
  const int64_t id = cluster.Submit(Short("waits"));
  cluster.WaitForJob(id, [](const json& j) {
    return ReasonStarts(j, "Waiting: every up node is drained");
  }, 10);
  json nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
  CHECK(nodes[0]["state"] == "DRAINED");
  CHECK(nodes[0]["drain_reason"] == "disk swap");
  REQUIRE(cluster.Kiln({"node", "resume", cluster.worker_name()}).exit_code == 0);
  cluster.WaitForJob(id, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  CHECK(cluster.Kiln({"node", "drain", "no-such-node"}).exit_code == 1);
}

TEST_CASE("holds, priorities, dependencies and drains survive a scheduler "
          "restart") {
  LocalCluster cluster(/*slots=*/2);
  const int64_t done = cluster.Submit(Short("done"));
  cluster.WaitForJob(done, [](const json& j) { return StateIs(j, "COMPLETED"); }, 60);
  auto held = cluster.Kiln({"submit", "--hold", cluster.WriteSpec(Short("held"), "h.json")});
  const int64_t held_id = std::stoll(held.out);
  REQUIRE(cluster.Kiln({"priority", std::to_string(held_id), "42"}).exit_code == 0);
  json waits_spec = Short("waits");
  waits_spec["depends_on"] = {held_id};
  const int64_t waits = cluster.Submit(waits_spec);
  REQUIRE(cluster.Kiln({"node", "drain", cluster.worker_name(), "--reason", "rack move"})
              .exit_code == 0);

  cluster.StopScheduler();
  cluster.StartScheduler();
  cluster.RestartWorkerWith({});  // the worker follows the scheduler's new port

  json h = cluster.WaitForJob(held_id, [](const json& j) { return ReasonStarts(j, "Held:"); }, 10);
  CHECK(h["held"] == true);
  CHECK(h["priority"] == 42);
  CHECK(h["user"].get<std::string>().size() > 0);
  cluster.WaitForJob(waits, [](const json& j) { return ReasonStarts(j, "Dependency:"); }, 10);
  json nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
  CHECK(nodes[0]["state"] == "DRAINED");
  CHECK(nodes[0]["drain_reason"] == "rack move");

  REQUIRE(cluster.Kiln({"node", "resume", cluster.worker_name()}).exit_code == 0);
  REQUIRE(cluster.Kiln({"release", std::to_string(held_id)}).exit_code == 0);
  cluster.WaitForJob(waits, [](const json& j) { return StateIs(j, "COMPLETED"); }, 90);
  CHECK(StateIs(cluster.Show(held_id), "COMPLETED"));
}

TEST_CASE("cancel and time limit stop gracefully: the gang agrees on a step and saves a "
          "checkpoint there before exiting") {
  LocalCluster cluster(/*slots=*/2);
  // A grace period that a loaded machine still meets: the ranks must finish a step, save and
  // report before the agent's SIGKILL.
  cluster.RestartWorkerWith({"--kill-grace", "10"});
  json spec = StoppableSpec("graceful");
  const int64_t id = cluster.Submit(spec);
  cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 20;
  }, 60);
  REQUIRE(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
  // mpirun stops relaying output once it is told to stop, so the checkpoint is the evidence:
  // taken at the step the gang reached, not at a periodic step (there are none).
  CHECK(WaitFor([&] {
    json ckpts = json::parse(cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                             nullptr, false);
    return ckpts.is_array() && ckpts.size() == 1 && ckpts[0].value("step", 0) > 20;
  }, 15));
  CHECK(StateIs(cluster.Show(id), "CANCELLED"));

  // A time limit stops the same way, and the job can be continued from that checkpoint.
  json timed = spec;
  timed["name"] = "timed";
  timed["time_limit"] = 3;
  const int64_t timed_id = cluster.Submit(timed);
  cluster.WaitForJob(timed_id, [](const json& j) { return StateIs(j, "FAILED"); }, 30);
  CHECK(WaitFor([&] {
    json ckpts = json::parse(
        cluster.Kiln({"ckpt", "ls", std::to_string(timed_id), "--json"}).out, nullptr, false);
    return ckpts.is_array() && ckpts.size() == 1 && ckpts[0].value("step", 0) > 0;
  }, 15));
}

TEST_CASE("drain --requeue stops a running job gracefully, and it resumes from the checkpoint it "
          "saved once the node is back, without using a retry") {
  LocalCluster cluster(/*slots=*/2);
  cluster.RestartWorkerWith({"--kill-grace", "10"});
  json spec = StoppableSpec("requeued");
  spec["max_retries"] = 0;
  const int64_t id = cluster.Submit(spec);
  cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 20;
  }, 60);
  auto drained = cluster.Kiln({"node", "drain", cluster.worker_name(), "--requeue"});
  REQUIRE(drained.exit_code == 0);
  json job = cluster.WaitForJob(id, [](const json& j) { return StateIs(j, "PENDING"); }, 15);
  REQUIRE(StateIs(job, "PENDING"));
  REQUIRE(job["attempts"].size() == 1);
  CHECK(job["attempts"][0]["outcome"] == "REQUEUED");
  int64_t saved = 0;
  REQUIRE(WaitFor([&] {
    json ckpts = json::parse(cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                             nullptr, false);
    if (!ckpts.is_array() || ckpts.empty()) return false;
    saved = ckpts.back().value("step", 0);
    return saved > 20;
  }, 20));
  REQUIRE(cluster.Kiln({"node", "resume", cluster.worker_name()}).exit_code == 0);
  job = cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j.value("attempt", 0) == 2;
  }, 30);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "RUNNING"));  // max_retries 0, yet attempt 2 runs: a requeue is no failure
  REQUIRE(job["attempts"].size() == 2);
  CHECK(job["attempts"][1]["resumed_from_step"] == saved);
  CHECK(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}
