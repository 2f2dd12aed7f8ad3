// Start estimates through the real scheduler (harness): kiln show and kiln queue carry each
// waiting job's estimate, from time limits and from progress.
#include <catch2/catch.hpp>

#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::Received;
using kiln::testing::ServiceHarness;
using kiln::testing::SmallSpec;
using namespace kiln::protocol;
using nlohmann::json;

TEST_CASE("a waiting job's start is estimated from the time limit or progress of what runs") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 2);
  w.Register();
  h.Turn(0);
  json limited = SmallSpec("limited", 2);
  limited["time_limit"] = 600;
  const int64_t first = h.Submit(limited);
  const int64_t second = h.Submit(SmallSpec("second", 2));
  const int64_t third = h.Submit(SmallSpec("third", 1));
  h.RunFor(1000);
  w.Poll();
  REQUIRE(w.LaunchOf(first));
  w.Start(first, 1);
  h.RunFor(1000);
  json running = h.Show(first);
  REQUIRE(running["state"] == "RUNNING");
  json waiting = h.Show(second);
  REQUIRE(waiting.contains("start_estimate"));
  CHECK(waiting["start_estimate"]["at"] == running["started_at"].get<int64_t>() + 600'000);
  CHECK(waiting["start_estimate"]["after"] == json{first});
  CHECK(waiting["start_estimate"]["nodes"] == json{"node-a"});
  // The second has no time limit: what comes after it cannot know when it starts.
  CHECK(h.Show(third)["start_estimate"]["at"].is_null());

  // Progress: 100 of 1000 steps in 10 s says the first ends in 90 s, before its limit.
  w.Send(ProgressReport{first, 1, {{"step", 10}, {"total_steps", 1000}, {"loss", 1.0}}});
  h.Turn(0);
  h.clock().Advance(10'000);
  w.Heartbeat();
  w.Send(ProgressReport{first, 1, {{"step", 110}, {"total_steps", 1000}, {"loss", 0.5}}});
  h.Turn(0);
  const int64_t reported_at = h.clock().WallMs();
  h.Turn(1100);  // a pass
  const int64_t at = h.Show(second)["start_estimate"]["at"].get<int64_t>();
  CHECK(at == reported_at + 89'000);
  // kiln queue carries it too.
  Received q = h.Ask(h.alice(), QueueRequest{});
  bool found = false;
  for (const auto& j : q.body()["data"]) {
    if (j["id"] == second) found = j.contains("start_estimate");
  }
  CHECK(found);
}
