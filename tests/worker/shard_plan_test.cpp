#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "worker/train/shard_plan.h"

using namespace kiln::train;

TEST_CASE("an epoch order is a permutation, the same for the same seed and epoch") {
  auto a = EpochOrder(1000, 42, 3);
  auto b = EpochOrder(1000, 42, 3);
  CHECK(a == b);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(sorted[static_cast<size_t>(i)] == i);
  CHECK(EpochOrder(1000, 42, 4) != a);
  CHECK(EpochOrder(1000, 43, 3) != a);
}

TEST_CASE("the ranks' slices of a step tile the global batch without overlap") {
  ShardPlan plan{1000, 16, 4};
  CHECK(plan.GlobalBatch() == 64);
  CHECK(plan.StepsPerEpoch() == 15);  // 1000 / 64, the partial batch dropped
  std::set<int64_t> covered;
  for (int r = 0; r < 4; ++r) {
    for (int64_t i = 0; i < plan.batch; ++i) covered.insert(plan.SliceStart(2, r) + i);
  }
  CHECK(covered.size() == 64);
  CHECK(*covered.begin() == 128);
  CHECK(*covered.rbegin() == 191);
}

TEST_CASE("two ranks of batch B read exactly the samples of one rank of batch 2B") {
  ShardPlan two{600, 8, 2};
  ShardPlan one{600, 16, 1};
  for (int64_t step = 0; step < two.StepsPerEpoch(); ++step) {
    REQUIRE(two.SliceStart(step, 0) == one.SliceStart(step, 0));
    REQUIRE(two.SliceStart(step, 1) == one.SliceStart(step, 0) + 8);
  }
}

#include "worker/train/gpu_binding.h"

TEST_CASE("each local rank gets its own slice of the node's GPU ids") {
  using kiln::train::RankGpuIds;
  CHECK(RankGpuIds("0,2,3,5", 1, 0) == "0");
  CHECK(RankGpuIds("0,2,3,5", 1, 3) == "5");
  CHECK(RankGpuIds("0,2,3,5", 2, 1) == "3,5");
  CHECK(RankGpuIds("0,2,3,5", 2, 2) == "");
  CHECK(RankGpuIds("0,1", 0, 0) == "");
}

TEST_CASE("step seeds are a pure function of seed, rank and step, distinct across them") {
  using kiln::train::StepSeed;
  CHECK(StepSeed(7, 0, 10) == StepSeed(7, 0, 10));
  CHECK(StepSeed(7, 0, 10) != StepSeed(7, 1, 10));
  CHECK(StepSeed(7, 0, 10) != StepSeed(7, 0, 11));
  CHECK(StepSeed(7, 0, 10) != StepSeed(8, 0, 10));
}
