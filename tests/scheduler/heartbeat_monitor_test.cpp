#include <catch2/catch.hpp>

#include "common/clock.h"
#include "scheduler/core/heartbeat_monitor.h"

using kiln::FakeClock;
using kiln::core::HeartbeatMonitor;

TEST_CASE("a worker silent for longer than the timeout is reported once") {
  FakeClock clock;
  HeartbeatMonitor monitor(3000);
  monitor.Heard("a", clock.MonotonicMs());
  monitor.Heard("b", clock.MonotonicMs());
  clock.Advance(2000);
  monitor.Heard("b", clock.MonotonicMs());
  CHECK(monitor.TakeExpired(clock.MonotonicMs()).empty());
  clock.Advance(1001);
  CHECK(monitor.TakeExpired(clock.MonotonicMs()) == std::vector<std::string>{"a"});
  CHECK(monitor.TakeExpired(clock.MonotonicMs()).empty());
  CHECK_FALSE(monitor.Knows("a"));
  clock.Advance(5000);
  CHECK(monitor.TakeExpired(clock.MonotonicMs()) == std::vector<std::string>{"b"});
}

TEST_CASE("exactly the timeout is not yet silent") {
  FakeClock clock;
  HeartbeatMonitor monitor(3000);
  monitor.Heard("a", clock.MonotonicMs());
  clock.Advance(3000);
  CHECK(monitor.TakeExpired(clock.MonotonicMs()).empty());
}
