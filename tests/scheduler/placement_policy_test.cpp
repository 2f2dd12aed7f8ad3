#include <catch2/catch.hpp>

#include "scheduler/core/placement_policy.h"

using namespace kiln::core;

TEST_CASE("a job is placed whole on one node with enough free slots") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"a", 2, 1, 0, 0, true}, {"b", 4, 0, 0, 0, true}}, {{1, 2, 0}});
  REQUIRE(plan.placements.size() == 1);
  CHECK(plan.placements[0].node == "b");
  CHECK(plan.placements[0].ranks == 2);
  CHECK(plan.waiting.empty());
}

TEST_CASE("best fit picks the node with the fewest free slots that still fit") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"big", 8, 0, 0, 0, true}, {"small", 2, 0, 0, 0, true}}, {{1, 2, 0}});
  REQUIRE(plan.placements.size() == 1);
  CHECK(plan.placements[0].node == "small");
}

TEST_CASE("slots placed in a pass are not given twice in that pass") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"a", 2, 0, 0, 0, true}}, {{1, 2, 0}, {2, 1, 0}});
  REQUIRE(plan.placements.size() == 1);
  CHECK(plan.placements[0].job_id == 1);
  REQUIRE(plan.waiting.size() == 1);
  CHECK(plan.waiting[0].job_id == 2);
  CHECK(plan.waiting[0].reason.find("most free is 0 slots") != std::string::npos);
}

TEST_CASE("oldest first: the queue order decides who gets contested slots") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"a", 2, 0, 0, 0, true}}, {{5, 2, 0}, {6, 2, 0}});
  REQUIRE(plan.placements.size() == 1);
  CHECK(plan.placements[0].job_id == 5);
}

TEST_CASE("down nodes get nothing, and with no node up the reason says so") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"a", 4, 0, 0, 0, false}}, {{1, 1, 0}});
  CHECK(plan.placements.empty());
  REQUIRE(plan.waiting.size() == 1);
  CHECK(plan.waiting[0].reason == "Waiting: no worker is up");
}

TEST_CASE("a job larger than any node is Infeasible, naming the largest node") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"a", 4, 0, 0, 0, true}}, {{1, 8, 0}});
  REQUIRE(plan.waiting.size() == 1);
  CHECK(plan.waiting[0].reason == "Infeasible: needs 8 slots on one node, largest has 4");
}

TEST_CASE("GPUs are counted like slots") {
  SingleNodeBestFit policy;
  auto plan = policy.Plan({{"cpu", 8, 0, 0, 0, true}, {"gpu", 8, 0, 4, 2, true}},
                          {{1, 2, 1}, {2, 1, 4}});
  REQUIRE(plan.placements.size() == 1);
  CHECK(plan.placements[0].node == "gpu");
  CHECK(plan.placements[0].gpus == 2);
  REQUIRE(plan.waiting.size() == 1);
  CHECK(plan.waiting[0].reason.find("4 GPUs") != std::string::npos);
}
