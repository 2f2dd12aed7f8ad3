// Job output reaches `kiln logs` exactly once: numbered lines, stored once each, acknowledged,
// and resent by the worker after gaps, reconnects and scheduler restarts.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <sstream>
#include <thread>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using kiln::testing::RawClient;
using kiln::testing::SplitLines;
using kiln::testing::SyntheticSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

LogBatch Numbered(int64_t job, int64_t first, int64_t count, int64_t oldest) {
  LogBatch b{job, 1, {}, first, oldest};
  for (int64_t n = first; n < first + count; ++n) b.lines.push_back("line " + std::to_string(n));
  return b;
}

}  // namespace

TEST_CASE("numbered output is stored once per line: duplicates are skipped, a gap is asked for "
          "again, and lines the worker dropped are reported as lost") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
  const int64_t id = cluster.Submit(SyntheticSpec("numbered", 1, 1, 64));
  REQUIRE(worker.Expect("launch", 5000));
  worker.Send(Encode(Heartbeat{"fake", {{id, 1}}}));

  auto ack = [&](const LogBatch& batch) {
    worker.Send(Encode(batch));
    auto reply = worker.Expect("log_ack", 5000);
    REQUIRE(reply);
    return DecodeBody<LogAck>(reply->first).value();
  };
  CHECK(ack(Numbered(id, 0, 10, 0)).next_line == 10);
  CHECK(ack(Numbered(id, 5, 10, 5)).next_line == 15);  // 5-9 again: skipped
  LogAck gap = ack(Numbered(id, 20, 5, 15));  // 15-19 lost on the way: asked for again
  CHECK(gap.next_line == 15);
  CHECK(gap.rewind);
  CHECK(ack(Numbered(id, 15, 10, 15)).next_line == 25);
  LogAck dropped = ack(Numbered(id, 30, 2, 30));  // the worker dropped 25-29
  CHECK(dropped.next_line == 32);
  CHECK_FALSE(dropped.rewind);

  auto logs = SplitLines(cluster.Kiln({"logs", std::to_string(id), "--raw"}).out);
  REQUIRE(logs.size() == 25 + 1 + 2);
  for (int n = 0; n < 25; ++n) CHECK(logs[n] == "line " + std::to_string(n));
  CHECK(logs[25].find("5 lines of output were lost") != std::string::npos);
  CHECK(logs[26] == "line 30");
  CHECK(logs[27] == "line 31");
}

TEST_CASE("the ranks' output reaches kiln logs exactly once across scheduler kill -9 and "
          "restart") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/10.0);
  // 128 steps an epoch, a progress line every 100 steps: 640 of them, over about half a minute.
  const int64_t id = cluster.Submit(SyntheticSpec("chatty", 2, 500, 4096));
  for (int64_t at : {8000, 30000}) {
    json seen = cluster.WaitForJob(id, [&](const json& j) {
      return j.value("state", "") != "RUNNING" || j["metrics"].value("step", 0) > at;
    }, 120);
    REQUIRE(seen["state"] == "RUNNING");
    cluster.KillScheduler();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // output piles up meanwhile
    cluster.StartScheduler();
  }
  json job = cluster.WaitForJob(id, [](const json& j) {
    return j.value("state", "") == "COMPLETED" || j.value("state", "") == "FAILED";
  }, 180);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "COMPLETED");
  const int64_t total = job["metrics"]["step"];
  REQUIRE(total == 500 * 128);
  std::map<int64_t, int> seen;
  for (const auto& line : SplitLines(cluster.Kiln({"logs", std::to_string(id), "--raw"}, 60).out)) {
    const auto at = line.find(" step ");
    if (line.rfind("[rank 0] epoch ", 0) != 0 || at == std::string::npos) continue;
    seen[std::stoll(line.substr(at + 6))] += 1;
  }
  for (int64_t step = 100; step <= total; step += 100) {
    INFO("step " << step);
    CHECK(seen[step] == 1);
  }
  CHECK(seen.size() == static_cast<size_t>(total / 100));
}

TEST_CASE(
    "output an agent shipped but never saw acknowledged is sent again by the agent that "
    "replaces it: every line the node saw reaches kiln logs once") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/30.0);
  // 256 steps an epoch, a progress line every 100 steps, for far longer than the test.
  const int64_t id = cluster.Submit(SyntheticSpec("spooled", 1, 500, 4096));
  json seen = cluster.WaitForJob(
      id,
      [](const json& j) {
        return j.value("state", "") != "RUNNING" || j["metrics"].value("step", 0) > 3000;
      },
      120);
  REQUIRE(seen["state"] == "RUNNING");
  // No acknowledgements while the scheduler is down: output piles up in the agent (and its
  // spool); then the agent dies with it, and a new agent takes the node over.
  cluster.KillScheduler();
  auto steps_of = [](const std::vector<std::string>& lines) {
    std::map<int64_t, int> steps;
    for (const auto& line : lines) {
      const auto at = line.find(" step ");
      if (line.rfind("[rank 0] epoch ", 0) != 0 || at == std::string::npos) continue;
      steps[std::stoll(line.substr(at + 6))] += 1;
    }
    return steps;
  };
  const std::string output_log =
      cluster.dir() + "/work/jobs/" + std::to_string(id) + "/attempt-1/output.log";
  // Until lines were printed while the scheduler is down (a loaded machine trains slower than a
  // fixed wait assumes), so some are never acknowledged.
  kiln::testing::WaitFor(
      [&] {
        auto text = kiln::ReadFile(output_log);
        if (!text.ok()) return false;
        const auto steps = steps_of(SplitLines(*text));
        return !steps.empty() &&
               steps.rbegin()->first > seen["metrics"]["step"].get<int64_t>() + 200;
      },
      60);
  cluster.KillWorker();
  cluster.StartScheduler();
  cluster.StartWorker();
  json job = cluster.WaitForJob(
      id,
      [](const json& j) {
        return j.value("state", "") == "FAILED" || j.value("state", "") == "COMPLETED";
      },
      60);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "FAILED");  // the new agent stopped the orphaned ranks (max_retries 0)

  auto output = kiln::ReadFile(output_log);
  REQUIRE(output.ok());
  const std::map<int64_t, int> on_node = steps_of(SplitLines(*output));
  REQUIRE(!on_node.empty());
  // Lines printed while the scheduler was down exist, so some were never acknowledged.
  REQUIRE(on_node.rbegin()->first > seen["metrics"]["step"].get<int64_t>() + 200);
  std::map<int64_t, int> in_logs;
  REQUIRE(kiln::testing::WaitFor(
      [&] {
        in_logs = steps_of(SplitLines(
            cluster.Kiln({"logs", std::to_string(id), "--raw", "--attempt", "1"}, 60).out));
        return in_logs.size() >= on_node.size();
      },
      30));
  for (const auto& [step, count] : on_node) {
    INFO("step " << step);
    CHECK(count == 1);
    CHECK(in_logs[step] == 1);
  }
  CHECK(in_logs.size() == on_node.size());
}
