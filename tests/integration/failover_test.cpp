// Failures of kiln's own processes while jobs train: the scheduler killed with SIGKILL (mid
// training and mid submit burst), and the worker agent killed and restarted.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <map>
#include <set>
#include <thread>

#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "worker/agent/process_group.h"

using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

bool StateIs(const json& job, const std::string& state) { return job.value("state", "") == state; }

// A job of a few seconds of 2-rank training with checkpoints every 20 steps, of steps big enough
// that the checkpoints come a fraction of a second apart.
json TrainingSpec(const std::string& name, int epochs) {
  json spec = SyntheticSpec(name, 2, epochs, 8192);
  spec["model"]["hidden"] = {256, 256};
  spec["train"]["batch_size"] = 128;
  spec["checkpoint"] = {{"every_steps", 20}, {"keep_last", 2}};
  spec["max_retries"] = 2;
  return spec;
}

// Pipelined submits from one CURVE client, as the CLI would send them (request ids kept).
class SubmitBurst {
 public:
  explicit SubmitBurst(const LocalCluster& cluster)
      : socket_(context_, kiln::transport::SocketKind::kDealer), token_(cluster.admin_token()) {
    cluster.ConnectSecurely(socket_, /*as_worker=*/false);
  }
  void Send(const std::string& request_id, const json& spec) {
    kiln::protocol::Envelope e = kiln::protocol::MakeEnvelope(
        kiln::protocol::SubmitRequest{request_id, spec, std::nullopt, std::nullopt, "", true},
        request_id);
    e.auth = token_;
    (void)socket_.Send({kiln::protocol::EncodeEnvelope(e)});
  }
  // Collects replies for up to wait_ms: request id -> (job id, duplicate).
  void Collect(int wait_ms) {
    kiln::transport::Poller poller;
    poller.AddSocket(socket_);
    (void)poller.Wait(wait_ms);
    while (auto frames = socket_.Receive()) {
      auto e = kiln::protocol::DecodeEnvelope((*frames)[0]);
      if (!e.ok() || e->type != "submit_reply") continue;
      acked[e->id] = {e->body["job_id"].get<int64_t>(), e->body["duplicate"].get<bool>()};
    }
  }
  std::map<std::string, std::pair<int64_t, bool>> acked;

 private:
  kiln::transport::Context context_;
  kiln::transport::Socket socket_;
  std::string token_;
};

}  // namespace

TEST_CASE("kill -9 of the scheduler: training goes on and is re-adopted, acknowledged submits "
          "survive, and retried submits are not doubled") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/5.0);
  const int64_t id = cluster.Submit(TrainingSpec("survivor", 6));
  REQUIRE(StateIs(cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 5;
  }, 60), "RUNNING"));

  // A burst of held submits, with the scheduler killed while replies are still coming.
  SubmitBurst burst(cluster);
  json small = SyntheticSpec("burst", 1, 1, 64);
  const int kSubmits = 400;
  for (int i = 0; i < kSubmits; ++i) burst.Send("burst-" + std::to_string(i), small);
  while (burst.acked.size() < 50) burst.Collect(50);
  cluster.KillScheduler();
  burst.Collect(100);  // replies already on the wire
  const auto acked_before = burst.acked;
  INFO(acked_before.size() << " of " << kSubmits << " submits acknowledged before the kill");

  cluster.StartScheduler();  // same state dir, same address: the worker reconnects by itself
  // Training never stopped: the same attempt completes.
  json job = cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "COMPLETED") || StateIs(j, "FAILED");
  }, 120);
  INFO(job.dump(2));
  CHECK(StateIs(job, "COMPLETED"));
  CHECK(job["attempt"] == 1);

  // Every acknowledged submit is there; sending every request again (as the CLI retries) gives
  // back the same jobs for the acknowledged ones and one job per request id overall.
  SubmitBurst retry(cluster);
  for (int i = 0; i < kSubmits; ++i) retry.Send("burst-" + std::to_string(i), small);
  REQUIRE(WaitFor([&] {
    retry.Collect(100);
    return retry.acked.size() == static_cast<size_t>(kSubmits);
  }, 30));
  for (const auto& [request, reply] : acked_before) {
    CHECK(retry.acked[request].first == reply.first);
    CHECK(retry.acked[request].second);  // duplicate
  }
  std::set<int64_t> distinct;
  for (const auto& [request, reply] : retry.acked) distinct.insert(reply.first);
  CHECK(distinct.size() == static_cast<size_t>(kSubmits));
  auto all = json::parse(cluster.Kiln({"queue", "--all", "--json"}).out);
  CHECK(all.size() == static_cast<size_t>(kSubmits) + 1);
}

TEST_CASE("an agent killed and restarted mid-run stops the orphaned ranks, the attempt fails "
          "with that reason and the job resumes from its checkpoint") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/5.0);
  const int64_t id = cluster.Submit(TrainingSpec("orphaned", 8));
  REQUIRE(WaitFor([&] {
    auto ls = json::parse(cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                          nullptr, false);
    return ls.is_array() && !ls.empty();
  }, 60));
  const std::string tag = kiln::agent::RunTag(cluster.worker_name(), id, 1);
  REQUIRE(!kiln::agent::FindTagged(kiln::agent::ExactTag(tag)).empty());
  cluster.KillWorker();  // SIGKILL: no chance to stop its ranks
  CHECK(!kiln::agent::FindTagged(kiln::agent::ExactTag(tag)).empty());  // orphans, still training
  cluster.StartWorkerWith({});
  // The new agent kills the orphans before it registers; the scheduler hears that attempt 1 is
  // gone, fails it and retries.
  CHECK(WaitFor([&] { return kiln::agent::FindTagged(kiln::agent::ExactTag(tag)).empty(); }, 20));
  json job = cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "COMPLETED") || StateIs(j, "FAILED");
  }, 180);
  INFO(job.dump(2));
  CHECK(StateIs(job, "COMPLETED"));
  REQUIRE(job["attempts"].size() == 2);
  const json& first = job["attempts"][0];
  CHECK(first["outcome"] == "FAILED");
  CHECK(first["reason"].get<std::string>().find("attempt 1 failed") != std::string::npos);
  const json& second = job["attempts"][1];
  CHECK(second["outcome"] == "COMPLETED");
  CHECK(second["exit_code"] == 0);
  CHECK(second["resumed_from_step"].get<int64_t>() > 0);
  CHECK(second["nodes"][0]["node"] == cluster.worker_name());
}

TEST_CASE("a job of thousands of tiny steps a second, checkpointing every 20, does not get its "
          "worker marked DOWN") {
  // Once a known problem: ~150 checkpoints a second queued uploads without bound, and the
  // scheduler, stalled in fsyncs, judged the worker silent while its heartbeats waited behind
  // those uploads on the connection.
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/3.0);
  const int64_t id = cluster.Submit(SyntheticSpec("tiny-steps", 2, 100000, 4096));
  REQUIRE(StateIs(cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 100;
  }, 60), "RUNNING"));
  // A `show` that gets no answer in time (a loaded machine) says nothing about the job: only
  // answers count, and the job's history must show it never left RUNNING.
  bool stayed_up = true;
  for (int i = 0; i < 25 && stayed_up; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const json seen = cluster.Show(id);
    if (!seen.empty()) stayed_up = StateIs(seen, "RUNNING");
  }
  json job = cluster.WaitForJob(id, [](const json&) { return true; }, 30);
  INFO(job.dump(2));
  CHECK(stayed_up);
  REQUIRE(job.contains("events"));
  for (const auto& e : job["events"]) CHECK(e["from"] != "RUNNING");
  CHECK(job["metrics"].value("step", 0) > 10000);
  CHECK(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}

TEST_CASE("SIGTERM to an agent uploads the checkpoint its ranks save on the way out, reports the "
          "exits, and the job resumes from it elsewhere without using a retry") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/3.0);
  cluster.RestartWorkerWith({"--kill-grace", "10"});
  json spec = SyntheticSpec("agent-stop", 2, 100000, 4096);
  spec["checkpoint"]["every_steps"] = 1000000;  // only the one saved on SIGTERM
  const int64_t id = cluster.Submit(spec);  // max_retries 0
  REQUIRE(StateIs(cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 50;
  }, 60), "RUNNING"));
  cluster.StopWorker();  // SIGTERM, waits for the agent to exit
  json job = cluster.WaitForJob(id, [](const json& j) { return StateIs(j, "PENDING"); }, 15);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "PENDING"));
  CHECK(job["attempt"] == 1);  // no retry used
  REQUIRE(job["checkpoints"].size() == 1);
  const int64_t saved = job["checkpoints"][0]["step"].get<int64_t>();
  CHECK(saved > 50);
  const json& first = job["attempts"][0];
  CHECK(first["reason"].get<std::string>().find("requeued: worker " + cluster.worker_name() +
                                                " shut down") != std::string::npos);
  CHECK(first["exit_code"] == 143);

  cluster.StartWorker();
  job = cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["attempts"].size() == 2;
  }, 30);
  REQUIRE(job["attempts"].size() == 2);
  CHECK(job["attempts"][1]["resumed_from_step"] == saved);
  CHECK(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}
