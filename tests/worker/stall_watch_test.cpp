#include <catch2/catch.hpp>

#include "common/step_beacon.h"
#include "worker/agent/memory_watch.h"
#include "worker/agent/stall_watch.h"

using kiln::ParseStepBeacon;
using kiln::StepBeacon;
using kiln::agent::StallWatch;

TEST_CASE("step beacons are fixed-width lines that parse back, and nothing else parses") {
  const std::string a = kiln::FormatStepBeacon({1200, 1377, true});
  const std::string b = kiln::FormatStepBeacon({1, 1, false});
  CHECK(a.size() == b.size());  // rewritten in place without leaving an old tail
  auto back = ParseStepBeacon(a);
  REQUIRE(back);
  CHECK(back->step == 1200);
  CHECK(back->beat == 1377);
  CHECK(back->waiting);
  CHECK_FALSE(ParseStepBeacon("step 1 beat 2 waiting 2\n"));
  CHECK_FALSE(ParseStepBeacon("step -1 beat 2 waiting 0\n"));
  CHECK_FALSE(ParseStepBeacon("step 1 beat 2 waiting 0 trailing\n"));
  CHECK_FALSE(ParseStepBeacon(std::string(300, ' ')));
  CHECK(kiln::RankOfStepBeacon("rank-12") == 12);
  CHECK_FALSE(kiln::RankOfStepBeacon("rank-"));
  CHECK_FALSE(kiln::RankOfStepBeacon("rank-1x"));
  CHECK_FALSE(kiln::RankOfStepBeacon("../rank-1"));
  CHECK(kiln::StepBeaconPath("/r", 3) == "/r/steps/rank-3");
}

TEST_CASE("a rank that stops while the others wait for it in the allreduce is the one blamed") {
  StallWatch watch(std::nullopt, /*whole_gang_here=*/true);
  // Four ranks at 100 ms a step for 10 s.
  for (int64_t t = 0; t <= 10000; t += 500) {
    for (int r = 0; r < 4; ++r) watch.Observe(r, {t / 100, t / 100, false}, t);
  }
  CHECK(watch.TimeoutMs() == 60000);  // 20 x 100 ms is under the 60 s floor
  // Rank 3 stops after step 100; the others finish their part of step 101 and wait.
  for (int64_t t = 10500; t <= 80000; t += 500) {
    for (int r = 0; r < 3; ++r) watch.Observe(r, {100, 101, true}, t);
    watch.Observe(3, {100, 100, false}, t);
    if (t < 70000) CHECK_FALSE(watch.Check(t));
  }
  auto verdict = watch.Check(80000);
  REQUIRE(verdict);
  CHECK(verdict->ranks == std::vector<int>{3});
  CHECK(verdict->step == 100);
  CHECK_FALSE(verdict->all_waiting);
  CHECK(StallWatch::Describe(*verdict, "n2") == "Stalled: rank 3 on n2 made no step for 70 s "
                                                "after step 100");
}

TEST_CASE("slow steps raise the default timeout, and a job's own setting wins") {
  StallWatch slow(std::nullopt, true);
  for (int64_t t = 0; t <= 40000; t += 4000) slow.Observe(0, {t / 4000, t / 4000, false}, t);
  CHECK(slow.TimeoutMs() == 80000);  // 20 x 4 s
  CHECK_FALSE(slow.Check(40000 + 70000));
  CHECK(slow.Check(40000 + 80000));
  StallWatch fixed(5000, true);
  fixed.Observe(0, {1, 1, false}, 0);
  CHECK_FALSE(fixed.Check(4999));
  CHECK(fixed.Check(5000));
}

TEST_CASE("ranks that all wait here blame nobody here until twice the timeout, unless the whole "
          "gang runs here") {
  StallWatch member(10000, /*whole_gang_here=*/false);
  member.Observe(2, {50, 60, true}, 0);
  member.Observe(3, {50, 60, true}, 0);
  CHECK_FALSE(member.Check(15000));  // the culprit's own node speaks first
  auto late = member.Check(20000);
  REQUIRE(late);
  CHECK(late->all_waiting);
  CHECK(late->ranks == std::vector<int>{2, 3});
  StallWatch alone(10000, /*whole_gang_here=*/true);
  alone.Observe(0, {50, 60, true}, 0);
  alone.Observe(1, {50, 60, true}, 0);
  auto now = alone.Check(10000);
  REQUIRE(now);
  CHECK(now->all_waiting);
  // A rank still making progress means nothing here is stalled.
  StallWatch busy(10000, false);
  busy.Observe(0, {5, 5, true}, 0);
  busy.Observe(1, {5, 5, false}, 0);
  busy.Observe(1, {5, 9, false}, 15000);
  CHECK_FALSE(busy.Check(21000));
}

TEST_CASE("a rank over memory_per_rank is named with what it used, and within the limit nothing is") {
  using kiln::agent::OverMemory;
  const int64_t gib = int64_t{1} << 30;
  CHECK_FALSE(OverMemory({{0, 3 * gib}, {1, 4 * gib}}, 4 * gib, "w1"));
  CHECK_FALSE(OverMemory({{0, 9 * gib}}, 0, "w1"));  // no limit
  auto over = OverMemory({{0, 4 * gib + 1}, {1, 4 * gib + gib * 3 / 10}}, 4 * gib, "w1");
  REQUIRE(over);
  CHECK(*over == "OutOfMemory: rank 1 on node w1 used 4.3 GiB, over memory_per_rank 4.0 GiB");
}
