// CPU pinning: the agent's allocation of CPUs to attempts, and each rank's slice of them.
#include "worker/agent/core_allocator.h"

#include <catch2/catch.hpp>

#include "worker/train/cpu_binding.h"

using kiln::agent::CoreAllocator;
using kiln::train::RankCpuIds;

TEST_CASE("attempts get distinct CPUs while enough are free, and none when not") {
  CoreAllocator cores({0, 1, 2, 3});
  CHECK(cores.Take({1, 1}, 2) == std::vector<int>{0, 1});
  CHECK(cores.Take({2, 1}, 3).empty());  // only 2 free: not pinned, nothing taken
  CHECK(cores.free_count() == 2);
  CHECK(cores.Take({3, 1}, 1) == std::vector<int>{2});
  cores.Release({1, 1});
  CHECK(cores.Take({4, 1}, 3) == std::vector<int>{0, 1, 3});
  CHECK(cores.Take({4, 1}, 1).empty());  // an attempt is pinned once
  cores.Release({9, 9});                 // unknown: nothing happens
  CHECK(cores.free_count() == 0);
}

TEST_CASE("each local rank binds to its own cpus_per_rank slice of the attempt's CPUs") {
  CHECK(RankCpuIds("4,5,6,7", 2, 0) == std::vector<int>{4, 5});
  CHECK(RankCpuIds("4,5,6,7", 2, 1) == std::vector<int>{6, 7});
  CHECK(RankCpuIds("4,5,6,7", 2, 2).empty());
  CHECK(RankCpuIds("0", 1, 0) == std::vector<int>{0});
  CHECK(RankCpuIds("0,x", 1, 0).empty());
  CHECK(RankCpuIds("", 1, 0).empty());
  CHECK(RankCpuIds("0,1", 0, 0).empty());
}
