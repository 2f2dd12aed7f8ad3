// The service rollout planner, alone and as a simulated rollout: replicas become ready some
// steps after they start, one fails midway, and the ready count never drops below N-1.
#include "scheduler/core/service_rollout.h"

#include <catch2/catch.hpp>
#include <map>

using kiln::core::ModelRef;
using kiln::core::PlanRollout;
using kiln::core::ReplicaStatus;

TEST_CASE("rollout: a new service starts N replicas", "[service]") {
  auto plan = PlanRollout(3, {7, 100}, {});
  CHECK(plan.start == 3);
  CHECK(plan.stop.empty());
  CHECK_FALSE(plan.rolling);
}

TEST_CASE("rollout: a lost replica is replaced, extra replicas are stopped", "[service]") {
  CHECK(PlanRollout(3, {7, 100}, {{1, {7, 100}, true}, {2, {7, 100}, true}}).start == 1);
  auto down =
      PlanRollout(1, {7, 100}, {{1, {7, 100}, true}, {2, {7, 100}, false}, {3, {7, 100}, true}});
  CHECK(down.start == 0);
  CHECK(down.stop == std::vector<int64_t>{2, 3});  // not ready first, then the newest
}

TEST_CASE("rollout: surge one, stop one old once the new one is ready", "[service]") {
  const ModelRef old{7, 100}, target{9, 300};
  auto surge = PlanRollout(2, target, {{1, old, true}, {2, old, true}});
  CHECK(surge.start == 1);
  CHECK(surge.rolling);
  auto waiting = PlanRollout(2, target, {{1, old, true}, {2, old, true}, {3, target, false}});
  CHECK(waiting.start == 0);
  CHECK(waiting.stop.empty());
  auto swap = PlanRollout(2, target, {{1, old, true}, {2, old, true}, {3, target, true}});
  CHECK(swap.stop == std::vector<int64_t>{1});
  // An old replica that is not ready holds the surge's place for nothing: it goes first.
  auto broken = PlanRollout(2, target, {{1, old, true}, {2, old, false}, {3, target, false}});
  CHECK(broken.stop == std::vector<int64_t>{2});
  CHECK(PlanRollout(0, target, {{1, old, true}, {3, target, false}}).stop.size() == 2);
}

TEST_CASE("rollout: a surge replica with no room takes an old one's place", "[service]") {
  const ModelRef old{7, 100}, target{9, 300};
  ReplicaStatus waiting{3, target, false, true};
  auto plan = PlanRollout(2, target, {{1, old, true}, {2, old, true}, waiting});
  CHECK(plan.stop == std::vector<int64_t>{1});
  // Not while that would leave fewer than N-1 ready.
  auto short_of_ready = PlanRollout(2, target, {{1, old, true}, {2, old, false}, waiting});
  CHECK(short_of_ready.stop == std::vector<int64_t>{2});  // the one that serves nobody
}

TEST_CASE(
    "rollout: a replica on a drained node moves once its replacement is ready, never to "
    "make room",
    "[service]") {
  const ModelRef model{7, 100}, drained{0, -1};  // how the scheduler marks it
  ReplicaStatus on_drained{1, drained, true, false, true};
  CHECK(PlanRollout(1, model, {on_drained}).start == 1);
  // The replacement waits for room: stopping the drained one frees none, so it stays.
  ReplicaStatus waiting{2, model, false, true};
  CHECK(PlanRollout(1, model, {on_drained, waiting}).stop.empty());
  ReplicaStatus ready{2, model, true};
  CHECK(PlanRollout(1, model, {on_drained, ready}).stop == std::vector<int64_t>{1});
}

TEST_CASE("rollout: simulated, never fewer than N-1 ready, ends on the new checkpoint",
          "[service]") {
  for (int capacity : {100, 0}) {  // 0: exactly N replicas fit
    for (int replicas : {1, 2, 3, 5}) {
      for (int fail_at : {-1, 2, 5}) {
        const ModelRef old{7, 100}, target{9, 300};
        struct Replica {
          ModelRef model;
          int age = 0;
        };
        std::map<int64_t, Replica> live;
        int64_t next_id = 1;
        for (int i = 0; i < replicas; ++i) live[next_id++] = {old, 10};
        int min_ready = replicas;
        bool done = false;
        for (int tick = 0; tick < 200 && !done; ++tick) {
          for (auto& [id, r] : live) ++r.age;
          if (tick == fail_at && !live.empty()) live.erase(live.begin());  // a replica dies
          // Replicas start in id order while there is room; the others wait (and do not age).
          const int room = capacity > 0 ? capacity : replicas;
          std::vector<ReplicaStatus> status;
          int ready = 0, placed = 0;
          for (auto& [id, r] : live) {
            const bool has_room = placed++ < room;
            if (!has_room) r.age = 0;
            status.push_back({id, r.model, r.age >= 3, !has_room});
            ready += r.age >= 3 ? 1 : 0;
          }
          if (tick != fail_at) min_ready = std::min(min_ready, ready);
          auto plan = PlanRollout(replicas, target, status);
          for (int64_t id : plan.stop) live.erase(id);
          for (int64_t i = 0; i < plan.start; ++i) live[next_id++] = {target, 0};
          CHECK(static_cast<int>(live.size()) <= replicas + 1);
          done = !plan.rolling && plan.start == 0 && plan.stop.empty() &&
                 static_cast<int>(live.size()) == replicas;
          for (const auto& [id, r] : live) done = done && r.model == target && r.age >= 3;
        }
        INFO("replicas " << replicas << ", failure at tick " << fail_at << ", capacity "
                         << capacity);
        CHECK(done);
        // A replica that dies, or makes room in a full cluster, takes one away until its
        // replacement is ready; both at once take two (the rollout itself never more than one).
        const int lost = (fail_at >= 0 ? 1 : 0) + (capacity == 0 ? 1 : 0);
        CHECK(min_ready >= replicas - lost);
      }
    }
  }
}
