#include <catch2/catch.hpp>

#include "worker/train/bucket_plan.h"

using kiln::train::PlanBuckets;

TEST_CASE("buckets are filled greedily in ready order and closed once full") {
  // 4-byte elements, 100-byte buckets.
  auto plan = PlanBuckets({10, 10, 10, 30, 5}, 100);
  REQUIRE(plan.buckets.size() == 3);
  CHECK(plan.buckets[0] == std::vector<size_t>{0, 1, 2});  // 120 bytes: closed
  CHECK(plan.buckets[1] == std::vector<size_t>{3});        // 120 bytes: closed
  CHECK(plan.buckets[2] == std::vector<size_t>{4});
}

TEST_CASE("a tensor larger than a bucket gets a bucket of its own") {
  auto plan = PlanBuckets({1000, 1, 1}, 100);
  REQUIRE(plan.buckets.size() == 2);
  CHECK(plan.buckets[0] == std::vector<size_t>{0});
  CHECK(plan.buckets[1] == std::vector<size_t>{1, 2});
}

TEST_CASE("every tensor is in exactly one bucket, in order") {
  std::vector<int64_t> sizes(50, 7);
  auto plan = PlanBuckets(sizes, 64);
  size_t next = 0;
  for (const auto& bucket : plan.buckets) {
    for (size_t i : bucket) REQUIRE(i == next++);
  }
  CHECK(next == 50);
}
