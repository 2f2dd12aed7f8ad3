// Replies are capped in bytes and paged: a job's long output and a long queue come back whole
// through the CLI, each line and each job exactly once, where one reply would exceed what a
// client accepts (4 MiB). And the filters that keep them short: --tail, --attempt, --rank,
// --since; --user, --state.
#include <catch2/catch.hpp>

#include <set>
#include <sstream>

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

TEST_CASE("kiln logs pages long output, every line once, and --tail, --attempt, --rank and "
          "--since select lines") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"fake", 2, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
  json spec = SyntheticSpec("chatty", 1, 1, 64);
  spec["max_retries"] = 1;
  const int64_t id = cluster.Submit(spec);
  REQUIRE(worker.Expect("launch", 5000));
  worker.Send(Encode(Heartbeat{"fake", {{id, 1}}}));
  // 640 lines of 15 KiB: about 10 MiB of output, in batches under the envelope limit.
  constexpr int kLines = 640;
  const std::string padding(15 << 10, 'x');
  for (int batch = 0; batch < kLines / 40; ++batch) {
    LogBatch b{id, 1, {}};
    for (int i = batch * 40; i < (batch + 1) * 40; ++i) {
      b.lines.push_back("[rank " + std::to_string(i % 2) + "] line " + std::to_string(i) + " " +
                        padding);
    }
    worker.Send(Encode(b));
  }
  worker.Send(Encode(JobExited{id, 1, 1, 0, "rank 0 failed", {}, {}, {}}));
  REQUIRE(worker.Expect("exit_ack", 10000));
  auto second = worker.Expect("launch", 10000);
  REQUIRE(second);
  worker.Send(Encode(Heartbeat{"fake", {{id, 2}}}));
  worker.Send(Encode(LogBatch{id, 2, {"[rank 0] second a", "[rank 1] second b",
                                      "[kiln-worker] second c"}}));
  REQUIRE(kiln::testing::WaitFor(
      [&] { return SplitLines(cluster.Kiln({"logs", std::to_string(id), "--attempt", "2", "--raw"}).out)
                       .size() == 3; },
      10));

  auto all = cluster.Kiln({"logs", std::to_string(id), "--raw"}, 60);
  REQUIRE(all.exit_code == 0);
  auto lines = SplitLines(all.out);
  REQUIRE(lines.size() == kLines + 3);
  for (int i = 0; i < kLines; ++i) {
    REQUIRE(lines[i].rfind("[rank " + std::to_string(i % 2) + "] line " + std::to_string(i) + " ",
                           0) == 0);
  }
  CHECK(lines.back() == "[kiln-worker] second c");

  auto tail = cluster.Kiln({"logs", std::to_string(id), "--raw", "--tail", "2"});
  CHECK(SplitLines(tail.out) == std::vector<std::string>{"[rank 1] second b", "[kiln-worker] second c"});
  auto rank1 = cluster.Kiln({"logs", std::to_string(id), "--raw", "--rank", "1", "--tail", "2"});
  REQUIRE(SplitLines(rank1.out).size() == 2);
  CHECK(SplitLines(rank1.out)[0].rfind("[rank 1] line 639 ", 0) == 0);
  CHECK(SplitLines(rank1.out)[1] == "[rank 1] second b");
  auto second_attempt = cluster.Kiln({"logs", std::to_string(id), "--raw", "--attempt", "2"});
  CHECK(SplitLines(second_attempt.out).size() == 3);
  auto recent = cluster.Kiln({"logs", std::to_string(id), "--raw", "--since", "1h"}, 60);
  CHECK(SplitLines(recent.out).size() == kLines + 3);
  auto future = cluster.Kiln({"logs", std::to_string(id), "--raw", "--since", "2099-01-01 00:00"});
  CHECK(future.exit_code == 0);
  CHECK(future.out.empty());
  auto bad = cluster.Kiln({"logs", std::to_string(id), "--since", "last tuesday"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--since") != std::string::npos);
}

TEST_CASE("kiln queue lists 12,000 pending jobs in pages and filters by user and state") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  const std::string bob = cluster.AddUser("bob");
  REQUIRE(cluster.KilnWith(bob, {"submit", cluster.WriteSpec(SyntheticSpec("bobs", 1, 1, 64))})
              .exit_code == 0);
  RawClient client(cluster);
  constexpr int kJobs = 12000;
  const std::string name(60, 'q');  // long names: the whole queue is over 4 MiB of JSON
  for (int i = 0; i < kJobs; ++i) {
    client.Send(Encode(SubmitRequest{"bulk-" + std::to_string(i),
                                     SyntheticSpec(name + std::to_string(i % 10), 1, 1, 64), {}, {},
                                     "admin", false},
                       "s" + std::to_string(i)));
  }
  int replies = 0;
  while (replies < kJobs && client.Expect("submit_reply", 30000)) ++replies;
  REQUIRE(replies == kJobs);

  auto listed = cluster.Kiln({"queue", "--json"}, 120);
  REQUIRE(listed.exit_code == 0);
  json jobs = json::parse(listed.out);
  REQUIRE(jobs.size() == kJobs + 1);
  CHECK(jobs.dump().size() > (4u << 20));
  std::set<int64_t> ids;
  for (const auto& j : jobs) ids.insert(j["id"].get<int64_t>());
  CHECK(ids.size() == kJobs + 1);
  auto table = cluster.Kiln({"queue"}, 120);
  CHECK(SplitLines(table.out).size() == kJobs + 2);  // a header and one row each

  json bobs = json::parse(cluster.Kiln({"queue", "--json", "--user", "bob"}).out);
  REQUIRE(bobs.size() == 1);
  CHECK(bobs[0]["user"] == "bob");
  const int64_t bobs_job = bobs[0]["id"];
  REQUIRE(cluster.Kiln({"cancel", std::to_string(bobs_job)}).exit_code == 0);
  json cancelled = json::parse(cluster.Kiln({"queue", "--json", "--state", "cancelled"}).out);
  REQUIRE(cancelled.size() == 1);
  CHECK(cancelled[0]["id"] == bobs_job);
  CHECK(json::parse(cluster.Kiln({"queue", "--json", "--user", "bob"}).out).empty());
  auto bad = cluster.Kiln({"queue", "--state", "sleeping"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("body.states: unknown state \"SLEEPING\"") != std::string::npos);
}
