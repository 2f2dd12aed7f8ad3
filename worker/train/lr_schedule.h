// The learning rate at a step. Pure and torch-free.
//   constant: lr; step: lr * gamma^(floor(step / step_size)); cosine: from lr down to min_lr over
//   the steps after warm-up. Warm-up (any type): a linear ramp lr * (step + 1) / warmup_steps.
#pragma once

#include <cstdint>

#include "common/job_spec.h"

namespace kiln::train {

double LearningRate(const LrScheduleSpec& schedule, double base_lr, int64_t step,
                    int64_t total_steps);

}  // namespace kiln::train
