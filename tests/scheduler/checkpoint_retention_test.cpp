#include <catch2/catch.hpp>

#include "scheduler/core/checkpoint_retention.h"

using namespace kiln::core;

namespace {
std::vector<RetainedCheckpoint> Checkpoints() {
  // step: accuracy
  return {{100, 0.70}, {200, 0.85}, {300, 0.80}, {400, 0.90}, {500, 0.75}, {600, std::nullopt}};
}
}  // namespace

TEST_CASE("keep_last keeps only the newest checkpoints") {
  CHECK(CheckpointsToDelete(Checkpoints(), {2, 0, true}, {}) ==
        std::vector<int64_t>{100, 200, 300, 400});
}

TEST_CASE("keep_best also keeps the best by the metric, higher or lower is better") {
  CHECK(CheckpointsToDelete(Checkpoints(), {1, 2, true}, {}) ==
        std::vector<int64_t>{100, 300, 500});  // keeps 600 (last), 400 and 200 (best)
  CHECK(CheckpointsToDelete(Checkpoints(), {1, 1, false}, {}) ==
        std::vector<int64_t>{200, 300, 400, 500});  // lowest is 100
}

TEST_CASE("checkpoints without the metric never count as best") {
  CHECK(BestCheckpoint({{1, std::nullopt}, {2, 0.5}}, true) == 2);
  CHECK_FALSE(BestCheckpoint({{1, std::nullopt}}, true).has_value());
}

TEST_CASE("a protected checkpoint is never deleted") {
  CHECK(CheckpointsToDelete(Checkpoints(), {1, 0, true}, {100}) ==
        std::vector<int64_t>{200, 300, 400, 500});
}

TEST_CASE("ties for best prefer the newer checkpoint") {
  CHECK(BestCheckpoint({{1, 0.9}, {2, 0.9}, {3, 0.1}}, true) == 2);
}
