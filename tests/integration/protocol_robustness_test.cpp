// The scheduler answers malformed and hostile input with named errors and keeps serving.
#include <catch2/catch.hpp>

#include <optional>

#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using namespace kiln::protocol;
using kiln::transport::Frames;
using nlohmann::json;

using kiln::testing::RawClient;

TEST_CASE("malformed frames get named errors and the scheduler keeps serving") {
  LocalCluster cluster;
  RawClient client(cluster);
  CHECK(client.ErrorOf({"this is not json"}).find("not valid JSON") != std::string::npos);
  CHECK(client.ErrorOf({std::string("\0\xff\x01", 3)}).find("JSON") != std::string::npos);
  CHECK(client.ErrorOf({R"({"v":9,"type":"queue","id":"a","body":{}})"}).find("version 9") !=
        std::string::npos);
  CHECK(client.ErrorOf({R"({"v":1,"type":"drop_tables","id":"a","body":{}})"})
            .find("unknown message type") != std::string::npos);
  CHECK(client.ErrorOf({R"({"v":1,"type":"show","id":"a","body":{"job_id":"1; DROP"}})"})
            .find("body.job_id: must be an integer") != std::string::npos);
  CHECK(client.ErrorOf({R"({"v":1,"type":"submit","id":"a","body":{"spec":[]}})"})
            .find("body.request_id: is required") != std::string::npos);
  // Messages only a scheduler sends are refused, not acted on.
  CHECK(client.ErrorOf(Encode(KillJob{1, 1, "x"}, "k")).find("not accepted") != std::string::npos);
  // And it still answers.
  Envelope queue = client.Call(Encode(QueueRequest{true}, "q"));
  CHECK(queue.type == "data");
  CHECK(queue.id == "q");
}

TEST_CASE("the scheduler validates specs itself, naming every field") {
  LocalCluster cluster;
  RawClient client(cluster);
  json spec = kiln::testing::SyntheticSpec("x", 0, 0, 10);
  spec["train"]["loss"] = "hinge";
  Envelope reply = client.Call(Encode(SubmitRequest{"req-bad", spec, {}, {}, "tester", false}, "s"));
  REQUIRE(reply.type == "error");
  auto errors = reply.body["errors"].get<std::vector<std::string>>();
  CHECK(errors.size() == 3);
  CHECK(reply.body["message"] == "job spec rejected: 3 error(s)");
  CHECK(std::find(errors.begin(), errors.end(), "resources.ranks: must be >= 1, got 0") !=
        errors.end());
}

TEST_CASE("a submit retried with the same request id returns the same job, not a second one") {
  LocalCluster cluster;
  RawClient client(cluster);
  json spec = kiln::testing::SyntheticSpec("once", 1, 1, 64);
  Envelope first = client.Call(Encode(SubmitRequest{"req-1", spec, {}, {}, "tester", false}, "a"));
  Envelope second = client.Call(Encode(SubmitRequest{"req-1", spec, {}, {}, "tester", false}, "b"));
  REQUIRE(first.type == "submit_reply");
  REQUIRE(second.type == "submit_reply");
  CHECK(first.body["job_id"] == second.body["job_id"]);
  CHECK(first.body["duplicate"] == false);
  CHECK(second.body["duplicate"] == true);
  Envelope queue = client.Call(Encode(QueueRequest{true}, "q"));
  CHECK(queue.body["data"].size() == 1);
}

TEST_CASE("a worker message from an unregistered peer is answered with reregister") {
  LocalCluster cluster;
  RawClient client(cluster, /*as_worker=*/true);
  Envelope reply = client.Call(Encode(JobExited{1, 1, 0, 0, "", {}, {}, {}}));
  CHECK(reply.type == "reregister");
}

TEST_CASE("a lost launch is sent again until the worker acknowledges it, using no retry, and an "
          "attempt the worker stops reporting after it ran is failed") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
  json spec = kiln::testing::SyntheticSpec("resent", 1, 1, 64);  // max_retries 0
  const int64_t id = cluster.Submit(spec);
  auto first = worker.Expect("launch", 5000);
  REQUIRE(first);  // "lost": the fake worker does nothing with it and reports nothing running
  std::optional<std::pair<Envelope, Frames>> again;
  for (int i = 0; i < 40 && !again; ++i) {
    worker.Send(Encode(Heartbeat{"fake", {}}));
    again = worker.Expect("launch", 250);
  }
  REQUIRE(again);
  CHECK(again->first.body["job_id"] == id);
  CHECK(again->first.body["attempt"] == first->first.body["attempt"]);
  CHECK(cluster.Show(id)["state"] == "RUNNING");
  // Now it runs it, and ends it well: attempt 1 completes, no retry was needed.
  worker.Send(Encode(Heartbeat{"fake", {{id, 1}}}));
  worker.Send(Encode(JobExited{id, 1, 0, 0, "", {}, {}, {}}));
  json job = cluster.WaitForJob(id, [](const json& j) { return j["state"] == "COMPLETED"; }, 10);
  CHECK(job["state"] == "COMPLETED");
  CHECK(job["attempt"] == 1);

  // An attempt it acknowledged and then no longer reports (an agent restarted) fails.
  const int64_t lost = cluster.Submit(kiln::testing::SyntheticSpec("lost", 1, 1, 64));
  REQUIRE(worker.Expect("launch", 5000));
  worker.Send(Encode(Heartbeat{"fake", {{lost, 1}}}));
  json failed = json::object();
  for (int i = 0; i < 100 && failed.value("state", "") != "FAILED"; ++i) {
    worker.Send(Encode(Heartbeat{"fake", {}}));
    worker.Expect("heartbeat", 200);
    failed = cluster.Show(lost);
  }
  CHECK(failed["state"] == "FAILED");
  CHECK(failed["reason"].get<std::string>().find("not running it (the agent restarted)") !=
        std::string::npos);
}

TEST_CASE("an attempt the worker runs that the scheduler does not want is killed") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {{999, 1}}, {}, "", ""})));
  // The attempt of job 999 it claims to run is unknown: it is told to stop it (before the ack).
  auto kill = worker.Expect("kill", 5000);
  REQUIRE(kill);
  CHECK(kill->first.body["job_id"] == 999);
  REQUIRE(worker.Expect("register_ack", 5000));
}

TEST_CASE("a worker that sends a job back as it shuts down gets no new attempts until it "
          "registers again, and the job uses no retry") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
  const int64_t id = cluster.Submit(kiln::testing::SyntheticSpec("bounced", 1, 1, 64));
  auto launch = worker.Expect("launch", 5000);
  REQUIRE(launch);
  worker.Send(Encode(JobExited{id, 1, 127, 0, "worker fake is shutting down", {}, {}, true}));
  json job = cluster.WaitForJob(id, [](const json& j) { return j["state"] == "PENDING"; }, 10);
  REQUIRE(job["state"] == "PENDING");
  CHECK(job["attempts"][0]["outcome"] == "REQUEUED");
  // Leaving: nothing is placed there (heartbeats keep it UP) ...
  bool relaunched = false;
  for (int i = 0; i < 10 && !relaunched; ++i) {
    worker.Send(Encode(Heartbeat{"fake", {}}));
    relaunched = worker.Expect("launch", 300).has_value();
  }
  CHECK_FALSE(relaunched);
  CHECK(cluster.Show(id)["state"] == "PENDING");
  // ... until it registers again; then the job runs there and may still fail once (max_retries 0
  // is untouched by the requeue) or succeed.
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  auto again = worker.Expect("launch", 5000);
  REQUIRE(again);
  const int64_t attempt = again->first.body["attempt"].get<int64_t>();
  worker.Send(Encode(Heartbeat{"fake", {{id, attempt}}}));
  worker.Send(Encode(JobExited{id, attempt, 0, 0, "", {}, {}, {}}));
  job = cluster.WaitForJob(id, [](const json& j) { return j["state"] == "COMPLETED"; }, 10);
  CHECK(job["state"] == "COMPLETED");
}
