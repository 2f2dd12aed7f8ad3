// The scheduler's /metrics, read by Prometheus' own parser (python3-prometheus-client): jobs by
// state and user, nodes, slots, submits, finished jobs, pass and request histograms. A message
// type a sender invents never becomes a label.
#include <catch2/catch.hpp>

#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::LocalCluster;
using kiln::testing::RawClient;
using kiln::testing::RunCommand;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

// Fetches URL/metrics and parses it with prometheus_client (Debian's, so /usr/bin/python3):
// {"name{k=v,...}": value}, where the labels are sorted by name; exits non-zero when the text does
// not parse.
constexpr const char* kScrape = R"PY(
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + "{" + labels + "}"] = s.value
print(json.dumps(out))
)PY";

json Scrape(const std::string& url) {
  auto r = RunCommand({"/usr/bin/python3", "-c", kScrape, url}, 30);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

double Value(const json& m, const std::string& key) {
  return m.contains(key) ? m[key].get<double>() : -1;
}

}  // namespace

TEST_CASE(
    "the scheduler's /metrics parse with Prometheus' parser and count jobs, nodes, "
    "submits and requests") {
  LocalCluster cluster(/*slots=*/2);
  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0"});
  cluster.StartScheduler();
  const std::string endpoint = cluster.HttpUrl();
  REQUIRE(endpoint.rfind("http://127.0.0.1:", 0) == 0);

  const int64_t done = cluster.Submit(SyntheticSpec("short", 1, 1, 320));
  REQUIRE(cluster.WaitForJob(
              done, [](const json& j) { return j["state"] == "COMPLETED"; }, 120)["state"] ==
          "COMPLETED");
  const int64_t running = cluster.Submit(SyntheticSpec("long", 2, 100000, 4096));
  REQUIRE(cluster.WaitForJob(
              running, [](const json& j) { return j["state"] == "RUNNING"; }, 60)["state"] ==
          "RUNNING");
  RawClient raw(cluster);
  raw.Send({R"({"type":"invented-by-a-sender","id":"x","body":{}})"});
  REQUIRE(raw.Expect("error", 5000));

  json m;
  REQUIRE(WaitFor(
      [&] {
        m = Scrape(endpoint);
        return Value(m, "kiln_jobs{state=RUNNING,user=admin}") == 1 &&
               Value(m, "kiln_requests_total{type=other}") >= 1 &&
               Value(m, "kiln_checkpoint_bytes{storage=scheduler}") > 0;
      },
      30));
  INFO(m.dump(1));
  CHECK(Value(m, "kiln_submits_total{}") == 2);
  CHECK(Value(m, "kiln_jobs_finished_total{state=COMPLETED}") == 1);
  CHECK(Value(m, "kiln_nodes{state=UP}") == 1);
  CHECK(Value(m, "kiln_nodes{state=DOWN}") == 0);
  CHECK(Value(m, "kiln_node_slots{kind=total}") == 2);
  CHECK(Value(m, "kiln_node_slots{kind=used}") == 2);
  CHECK(Value(m, "kiln_queue_wait_seconds_count{}") == 2);
  CHECK(Value(m, "kiln_scheduling_pass_seconds_count{}") >= 2);
  CHECK(Value(m, "kiln_request_seconds_count{type=submit}") == 2);
  CHECK(Value(m, "kiln_requests_total{type=heartbeat}") >= 1);
  CHECK(Value(m, "kiln_read_only{}") == 0);
  // The finished job's checkpoints (keep_last 2) are in the scheduler's blob store.
  CHECK(Value(m, "kiln_checkpoint_bytes{storage=scheduler}") > 0);
  CHECK(Value(m, "kiln_checkpoint_bytes{storage=shared_fs}") == 0);
  for (const auto& [key, value] : m.items()) {
    CHECK(key.find("invented") == std::string::npos);
  }

  auto missing = RunCommand({"/usr/bin/python3", "-c",
                             "import sys, urllib.request, urllib.error\n"
                             "try:\n urllib.request.urlopen(sys.argv[1] + '/nothing-here')\n"
                             "except urllib.error.HTTPError as e:\n print(e.code)\n",
                             endpoint});
  CHECK(missing.out == "404\n");
  CHECK(cluster.Kiln({"cancel", std::to_string(running)}).exit_code == 0);
}

TEST_CASE("an agent's /metrics show its running attempt's ranks, memory and samples/s") {
  LocalCluster cluster(/*slots=*/2);
  cluster.RestartWorkerWith({"--http", "127.0.0.1:0"});
  std::string endpoint = kiln::testing::Slurp(cluster.dir() + "/work/http_endpoint");
  endpoint = endpoint.substr(0, endpoint.find('\n'));
  REQUIRE(endpoint.rfind("http://127.0.0.1:", 0) == 0);
  const int64_t job = cluster.Submit(SyntheticSpec("watched", 2, 100000, 4096));
  const std::string labels =
      "attempt=1,job=" + std::to_string(job) + ",node=" + cluster.worker_name();
  json m;
  REQUIRE(WaitFor(
      [&] {
        m = Scrape(endpoint);
        return Value(m, "kiln_agent_job_ranks{" + labels + "}") == 2 &&
               Value(m, "kiln_agent_job_samples_per_second{" + labels + "}") > 0;
      },
      60));
  INFO(m.dump(1));
  const std::string node = "node=" + cluster.worker_name();
  CHECK(Value(m, "kiln_agent_connected{" + node + "}") == 1);
  CHECK(Value(m, "kiln_agent_attempts_running{" + node + "}") == 1);
  CHECK(Value(m, "kiln_agent_slots{kind=total," + node + "}") == 2);
  CHECK(Value(m, "kiln_agent_slots{kind=used," + node + "}") == 2);
  // Two LibTorch processes hold tens of MiB each at least.
  CHECK(Value(m, "kiln_agent_job_rss_bytes{" + labels + "}") > 20e6);
  // No NVIDIA driver here: no GPU series, and nothing fails for it.
  for (const auto& [key, value] : m.items()) CHECK(key.find("kiln_agent_gpu") == std::string::npos);
  CHECK(cluster.Kiln({"cancel", std::to_string(job)}).exit_code == 0);
  REQUIRE(WaitFor(
      [&] {
        m = Scrape(endpoint);
        return Value(m, "kiln_agent_attempts_running{" + node + "}") == 0;
      },
      30));
}
