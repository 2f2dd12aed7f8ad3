#include <catch2/catch.hpp>

#include "worker/train/lr_schedule.h"

using kiln::LrScheduleSpec;
using kiln::train::LearningRate;

TEST_CASE("warm-up ramps linearly to the base rate") {
  LrScheduleSpec s;
  s.warmup_steps = 4;
  CHECK(LearningRate(s, 0.1, 0, 100) == Approx(0.025));
  CHECK(LearningRate(s, 0.1, 3, 100) == Approx(0.1));
  CHECK(LearningRate(s, 0.1, 50, 100) == Approx(0.1));
}

TEST_CASE("the step schedule multiplies by gamma every step_size steps") {
  LrScheduleSpec s;
  s.type = "step";
  s.step_size = 10;
  s.gamma = 0.5;
  CHECK(LearningRate(s, 1.0, 9, 100) == Approx(1.0));
  CHECK(LearningRate(s, 1.0, 10, 100) == Approx(0.5));
  CHECK(LearningRate(s, 1.0, 25, 100) == Approx(0.25));
}

TEST_CASE("cosine goes from the base rate to min_lr over the steps after warm-up") {
  LrScheduleSpec s;
  s.type = "cosine";
  s.warmup_steps = 10;
  s.min_lr = 0.01;
  CHECK(LearningRate(s, 1.0, 10, 110) == Approx(1.0));
  CHECK(LearningRate(s, 1.0, 60, 110) == Approx(0.505));
  CHECK(LearningRate(s, 1.0, 110, 110) == Approx(0.01));
}
