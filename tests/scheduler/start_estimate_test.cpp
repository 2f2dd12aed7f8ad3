#include "scheduler/core/start_estimate.h"

#include <catch2/catch.hpp>

#include "tests/scheduler/policy_fixtures.h"

using namespace kiln::core;
using namespace kiln::core::testing;

namespace {

constexpr kiln::Millis kNow = 1'000'000;
constexpr kiln::Millis kMinute = 60'000;

// A running job holding `ranks` slots of node `node` (whose used_slots it adds to).
EstimateRunning Running(std::vector<NodeState>& nodes, int64_t id, int32_t node, int64_t ranks,
                        kiln::Millis ends_at) {
  nodes[node].used_slots += ranks;
  return {id, Ranks(ranks), {NodeShare{node, ranks, {}}}, ends_at};
}

}  // namespace

TEST_CASE("waiting jobs start as running jobs end, in queue order", "[estimate]") {
  std::vector<NodeState> nodes = {Node("n1", 4)};
  std::vector<EstimateRunning> running = {Running(nodes, 7, 0, 4, kNow + 10 * kMinute)};
  std::vector<EstimateWaiting> waiting = {{1, Ranks(4), 30 * kMinute, false},
                                          {2, Ranks(2), 0, false}};
  auto e = EstimateStarts(nodes, running, waiting, kNow, 100);
  REQUIRE(e.size() == 2);
  CHECK(e[0].at == kNow + 10 * kMinute);
  CHECK(e[0].after == std::vector<int64_t>{7});
  CHECK(e[0].nodes == std::vector<int32_t>{0});
  // Job 1 takes the whole node for its 30 minutes; job 2 goes after it.
  CHECK(e[1].at == kNow + 40 * kMinute);
  CHECK(e[1].after == std::vector<int64_t>{1});
}

TEST_CASE("a small job backfills at the cursor, and jobs without an end make starts unknown",
          "[estimate]") {
  std::vector<NodeState> nodes = {Node("n1", 4)};
  std::vector<EstimateRunning> running = {Running(nodes, 7, 0, 2, kNow + 10 * kMinute),
                                          Running(nodes, 8, 0, 2, 0)};  // no time limit
  std::vector<EstimateWaiting> waiting = {{1, Ranks(4), 0, false},      // needs job 8's slots
                                          {2, Ranks(2), 0, false},      // fits once job 7 ends
                                          {3, Ranks(1), 0, true}};      // held
  auto e = EstimateStarts(nodes, running, waiting, kNow, 100);
  REQUIRE(e.size() == 3);
  CHECK(e[0].at == -1);
  CHECK(e[1].at == kNow + 10 * kMinute);
  CHECK(e[1].after == std::vector<int64_t>{7});
  CHECK(e[2].at == -1);
  CHECK(e[2].nodes.empty());
}

TEST_CASE("a job that fits now starts now, and the estimate stops at max_jobs", "[estimate]") {
  std::vector<NodeState> nodes = {Node("n1", 2), Node("n2", 2)};
  std::vector<EstimateWaiting> waiting = {{1, Ranks(4), 0, false}, {2, Ranks(1), 0, false}};
  auto e = EstimateStarts(nodes, {}, waiting, kNow, 1);
  REQUIRE(e.size() == 1);
  CHECK(e[0].at == kNow);
  CHECK(e[0].after.empty());
  CHECK(e[0].nodes.size() == 2);
}

TEST_CASE("a running job's end follows its progress rate", "[estimate]") {
  // 100 of 1000 steps in 10 s since this attempt's first report at step 0: 90 s to go.
  CHECK(ExpectedEndFromProgress(0, kNow - 10'000, 100, kNow, 1000) == kNow + 90'000);
  // A resumed attempt counts from its first report.
  CHECK(ExpectedEndFromProgress(500, kNow - 10'000, 600, kNow, 1000) == kNow + 40'000);
  CHECK(ExpectedEndFromProgress(0, kNow, 0, kNow, 1000) == 0);
  CHECK(ExpectedEndFromProgress(0, kNow - 1000, 1000, kNow, 1000) == kNow);
}

TEST_CASE("a job that can never fit leaves the cursor where it was for the jobs behind it",
          "[estimate]") {
  std::vector<NodeState> nodes = {Node("n1", 4)};
  std::vector<EstimateRunning> running = {Running(nodes, 7, 0, 2, kNow + 5 * kMinute),
                                          Running(nodes, 8, 0, 2, kNow + 20 * 60 * kMinute)};
  std::vector<EstimateWaiting> waiting = {{1, Ranks(8), 0, false},   // more than the node has
                                          {2, Ranks(2), 0, false}};  // fits when job 7 ends
  auto e = EstimateStarts(nodes, running, waiting, kNow, 100);
  REQUIRE(e.size() == 2);
  CHECK(e[0].at == -1);
  CHECK(e[1].at == kNow + 5 * kMinute);
  CHECK(e[1].after == std::vector<int64_t>{7});
}
