#include "scheduler/core/scheduling_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "tests/scheduler/policy_fixtures.h"

using namespace kiln::core;
using namespace kiln::core::testing;

namespace {
constexpr kiln::Millis kMinute = 60'000;
}

TEST_CASE("every queued job is started, waits or fails, exactly once") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Queue(1, Ranks(2));
  s.Queue(2, Ranks(4));
  s.Queue(3, Ranks(8));
  s.Queue(4, Ranks(1)).held = true;
  auto plan = s.Plan();
  CHECK(plan.starts.size() + plan.waits.size() + plan.failures.size() == 4);
  CHECK(StartedIds(plan) == std::vector<int64_t>{1});
}

TEST_CASE("higher priority goes first, then submission order") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Queue(1, Ranks(4), 0, 0);
  s.Queue(2, Ranks(4), 0, 5);
  auto plan = s.Plan();
  CHECK(StartedIds(plan) == std::vector<int64_t>{2});
  REQUIRE(WaitOf(plan, 1));
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kResources);  // the blocked head
}

TEST_CASE("jobs behind a blocked higher-priority job say so") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Run(100, 0, 4, 0);  // no time limit: the head's start is unknown
  s.Queue(1, Ranks(4), 0, 9);
  s.Queue(2, Ranks(2), 0, 1);
  auto plan = s.Plan();
  CHECK(plan.starts.empty());
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kResources);
  CHECK(plan.ReasonOf(*WaitOf(plan, 1)).find("start unknown") != std::string::npos);
  CHECK(WaitOf(plan, 2)->kind == WaitKind::kPriority);
  CHECK(plan.ReasonOf(*WaitOf(plan, 2)) ==
        "Priority: behind job 1 (priority 9), which waits for resources");
}

TEST_CASE("fair share: the user who has used less goes first within a priority") {
  Scenario s;
  s.nodes = {Node("a", 2)};
  s.users[0].usage = 5000;  // alice has used a lot
  s.Queue(1, Ranks(2), 0);
  s.Queue(2, Ranks(2), 1);  // bob, submitted later
  auto plan = s.Plan();
  CHECK(StartedIds(plan) == std::vector<int64_t>{2});
}

TEST_CASE("fair share weights scale usage") {
  Scenario s;
  s.nodes = {Node("a", 2)};
  s.users[0].usage = 5000;
  s.users[0].weight = 10;  // 500 per weight
  s.users[1].usage = 1000;  // 1000 per weight
  s.Queue(1, Ranks(2), 0);
  s.Queue(2, Ranks(2), 1);
  CHECK(StartedIds(s.Plan()) == std::vector<int64_t>{1});
}

TEST_CASE("fair share interleaves users' jobs within one pass") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  for (int i = 1; i <= 4; ++i) s.Queue(i, Ranks(1), 0);      // alice: 1-4
  for (int i = 5; i <= 8; ++i) s.Queue(i, Ranks(1), 1);      // bob: 5-8
  auto plan = s.Plan();
  // Four slots: two each, although all of alice's jobs were submitted first.
  CHECK(StartedIds(plan) == std::vector<int64_t>{1, 5, 2, 6});
  CHECK(WaitOf(plan, 3)->kind == WaitKind::kResources);
}

TEST_CASE("priority beats fair share") {
  Scenario s;
  s.nodes = {Node("a", 1)};
  s.users[0].usage = 1e9;
  s.Queue(1, Ranks(1), 0, 3);
  s.Queue(2, Ranks(1), 1, 0);
  CHECK(StartedIds(s.Plan()) == std::vector<int64_t>{1});
}

TEST_CASE("EASY backfill: a short job starts if it ends before the reserved start") {
  Scenario s;
  s.nodes = {Node("a", 5)};
  s.Run(100, 0, 3, s.now + 10 * kMinute);  // 2 free now, all 5 in 10 minutes
  s.Queue(1, Ranks(5));                    // head: needs all 5, reserved at +10 min
  s.Queue(2, Ranks(1), 0, 0, 5 * kMinute);   // ends before that: may start
  s.Queue(3, Ranks(1), 0, 0, 20 * kMinute);  // would still run then: may not
  s.Queue(4, Ranks(1));                      // no time limit: never jumps the reservation
  auto plan = s.Plan();
  REQUIRE(plan.reservation);
  CHECK(plan.reservation->job_id == 1);
  CHECK(plan.reservation->start_at == s.now + 10 * kMinute);
  REQUIRE(StartOf(plan, 2));
  CHECK(StartOf(plan, 2)->backfilled);
  CHECK_FALSE(StartOf(plan, 3));
  CHECK(WaitOf(plan, 3)->kind == WaitKind::kReserved);
  CHECK(WaitOf(plan, 4)->kind == WaitKind::kReserved);
  CHECK(plan.ReasonOf(*WaitOf(plan, 4)).find("time_limit") != std::string::npos);
}

TEST_CASE("EASY backfill: long jobs may use what the reservation does not need") {
  Scenario s;
  s.nodes = {Node("a", 4), Node("b", 4)};
  s.Run(100, 0, 4, s.now + 10 * kMinute);
  s.Run(101, 1, 2, s.now + 30 * kMinute);
  // Head needs 8 ranks: both nodes, at +30 min. Node b has 2 free now, but those are needed.
  s.Queue(1, Ranks(8));
  s.Queue(2, Ranks(2));
  auto plan = s.Plan();
  CHECK(plan.reservation->start_at == s.now + 30 * kMinute);
  CHECK(plan.starts.empty());

  Scenario t;
  t.nodes = {Node("a", 4), Node("b", 4), Node("c", 2)};
  t.Run(100, 0, 4, t.now + 10 * kMinute);
  t.Queue(1, Ranks(4));  // reserved on a at +10 min (b and c cannot... b can: it is free)
  auto p = t.Plan();
  CHECK(StartedIds(p) == std::vector<int64_t>{1});  // fits b now

  Scenario u;
  u.nodes = {Node("a", 4), Node("c", 2)};
  u.Run(100, 0, 4, u.now + 10 * kMinute);
  u.Queue(1, Ranks(4));  // reserved on a
  u.Queue(2, Ranks(2));  // no limit, but c is outside the reservation
  auto q = u.Plan();
  REQUIRE(StartOf(q, 2));
  CHECK(StartOf(q, 2)->shares[0].node == 1);
}

TEST_CASE("a backfilled job leaves the reserved resources free at the reserved start") {
  Scenario s;
  s.nodes = {Node("a", 8)};
  s.Run(100, 0, 6, s.now + 10 * kMinute);  // 2 free now, 8 at +10 min
  s.Queue(1, Ranks(6));                    // reserved at +10: leaves 2 spare then
  s.Queue(2, Ranks(2));                    // no limit: may take the 2 spare
  s.Queue(3, Ranks(1), 0, 0, kMinute);     // nothing left now
  auto plan = s.Plan();
  CHECK(StartedIds(plan) == std::vector<int64_t>{2});
  CHECK(WaitOf(plan, 3));
}

TEST_CASE("without backfill nothing passes the blocked head") {
  Scenario s;
  s.backfill = false;
  s.nodes = {Node("a", 4)};
  s.Run(100, 0, 3, s.now + 10 * kMinute);
  s.Queue(1, Ranks(4));
  s.Queue(2, Ranks(1), 0, 0, kMinute);
  CHECK(s.Plan().starts.empty());
}

TEST_CASE("held jobs wait and do not block others") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Queue(1, Ranks(4), 0, 10).held = true;
  s.Queue(2, Ranks(4));
  auto plan = s.Plan();
  CHECK(StartedIds(plan) == std::vector<int64_t>{2});
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kHeld);
}

TEST_CASE("dependencies: after-ok") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Queue(1, Ranks(1)).depends_on = {50};
  s.Queue(2, Ranks(1)).depends_on = {51};
  s.Queue(3, Ranks(1)).depends_on = {52};
  s.Queue(4, Ranks(1)).depends_on = {99};  // unknown
  s.dependencies = {{50, JobState::kRunning}, {51, JobState::kCompleted}, {52, JobState::kFailed}};
  auto plan = s.Plan();
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kDependency);
  CHECK(plan.ReasonOf(*WaitOf(plan, 1)) == "Dependency: waiting for job 50 to complete (it is RUNNING)");
  CHECK(StartOf(plan, 2));
  REQUIRE(plan.failures.size() == 2);
  CHECK(plan.failures[0].job_id == 3);
  CHECK(plan.failures[0].reason.find("job 52 ended FAILED") != std::string::npos);
  CHECK(plan.failures[1].job_id == 4);
}

TEST_CASE("infeasible jobs wait with the cause and do not block others") {
  Scenario s;
  s.nodes = {Node("a", 4, 2)};
  s.Queue(1, Ranks(2, 2));  // 4 GPUs, node has 2
  s.Queue(2, Ranks(1, 1));
  auto plan = s.Plan();
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kInfeasible);
  CHECK(plan.ReasonOf(*WaitOf(plan, 1)).rfind("Infeasible:", 0) == 0);
  CHECK(StartedIds(plan) == std::vector<int64_t>{2});
  CHECK(StartOf(plan, 2)->shares[0].gpu_ids == std::vector<int>{0});
}

TEST_CASE("no worker up: jobs wait, they are not infeasible") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.nodes[0].availability = NodeAvailability::kDown;
  s.Queue(1, Ranks(1));
  auto plan = s.Plan();
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kNoWorkers);
}

TEST_CASE("drained nodes take no new work") {
  Scenario s;
  s.nodes = {Node("a", 4), Node("b", 4)};
  s.nodes[0].availability = NodeAvailability::kDrained;
  s.Queue(1, Ranks(4));
  s.Queue(2, Ranks(4));
  auto plan = s.Plan();
  REQUIRE(StartOf(plan, 1));
  CHECK(StartOf(plan, 1)->shares[0].node == 1);
  CHECK_FALSE(StartOf(plan, 2));
}

TEST_CASE("a gang across nodes starts whole") {
  Scenario s;
  s.nodes = {Node("a", 2, 2), Node("b", 2, 2)};
  s.Queue(1, Ranks(4, 1));
  auto plan = s.Plan();
  REQUIRE(StartOf(plan, 1));
  const auto& shares = StartOf(plan, 1)->shares;
  REQUIRE(shares.size() == 2);
  for (const auto& sh : shares) CHECK(sh.gpu_ids == std::vector<int>{0, 1});
}

TEST_CASE("time limits: running jobs past their limit are timed out") {
  std::vector<RunningJob> running(3);
  running[0].id = 1;
  running[0].end_by = 100;
  running[1].id = 2;
  running[1].end_by = 0;  // no limit
  running[2].id = 3;
  running[2].end_by = 300;
  CHECK(TimedOut(running, 200) == std::vector<int64_t>{1});
}

TEST_CASE(
    "quotas: a job that would take its user past max_gpus or max_running_ranks waits, "
    "reserves nothing, and others start") {
  Scenario s;
  s.nodes = {Node("a", 16, 8)};
  s.users[0].max_gpus = 2;                               // alice
  s.users[1].max_running_ranks = 4;                      // bob
  s.Run(100, 0, 2, 0, /*gpus_per_rank=*/1, /*user=*/0);  // alice holds 2 GPUs already
  s.Queue(1, Ranks(1, 1), 0);                            // alice: a third GPU
  s.Queue(2, Ranks(2), 1);                               // bob: 2 of 4 ranks
  s.Queue(3, Ranks(2), 1);                               // bob: 4 of 4
  s.Queue(4, Ranks(1), 1);                               // bob: a fifth rank
  s.Queue(5, Ranks(2), 2);                               // carol: no quota
  s.Queue(6, Ranks(1), 0);  // alice without GPUs: her GPU quota does not apply
  auto plan = s.Plan();
  std::vector<int64_t> started = StartedIds(plan);
  std::sort(started.begin(), started.end());
  CHECK(started == std::vector<int64_t>{2, 3, 5, 6});
  REQUIRE(WaitOf(plan, 1));
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kQuota);
  CHECK(plan.ReasonOf(*WaitOf(plan, 1)) ==
        "Quota: user alice runs 2 of 2 GPUs allowed; this job needs 1 more");
  REQUIRE(WaitOf(plan, 4));
  CHECK(plan.ReasonOf(*WaitOf(plan, 4)) ==
        "Quota: user bob runs 4 of 4 ranks allowed; this job needs 1 more");
  CHECK_FALSE(plan.reservation.has_value());
}

TEST_CASE("an entry standing for several tasks starts as many as fit, then waits once") {
  Scenario s;
  s.nodes = {Node("a", 3), Node("b", 2)};
  s.Queue(1, Ranks(1)).tasks = 10;  // an array's pending tasks
  s.Queue(2, Ranks(1));
  auto plan = s.Plan();
  // Five slots: five starts from the array, each on its own share; then both wait.
  CHECK(StartedIds(plan) == std::vector<int64_t>(5, 1));
  REQUIRE(WaitOf(plan, 1));
  CHECK(WaitOf(plan, 1)->kind == WaitKind::kResources);
  REQUIRE(WaitOf(plan, 2));
  CHECK(std::count_if(plan.waits.begin(), plan.waits.end(),
                      [](const JobWait& w) { return w.job_id == 1; }) == 1);
}

TEST_CASE("an array's tasks take turns with another user's jobs by fair share") {
  Scenario s;
  s.nodes = {Node("a", 4)};
  s.Queue(1, Ranks(1), 0).tasks = 4;  // alice's array
  s.Queue(2, Ranks(1), 1);            // bob's jobs
  s.Queue(3, Ranks(1), 1);
  auto plan = s.Plan();
  REQUIRE(plan.starts.size() == 4);
  // Each start charges its user: alice, bob, alice, bob.
  CHECK(StartedIds(plan) == std::vector<int64_t>{1, 2, 1, 3});
}

TEST_CASE("an entry starts no more tasks than it stands for") {
  Scenario s;
  s.nodes = {Node("a", 8)};
  s.Queue(1, Ranks(1)).tasks = 3;
  s.Queue(2, Ranks(2));
  auto plan = s.Plan();
  CHECK(StartedIds(plan) == std::vector<int64_t>{1, 1, 1, 2});
  CHECK_FALSE(WaitOf(plan, 1));
}
