#include "worker/train/bucket_plan.h"

namespace kiln::train {

BucketPlan PlanBuckets(const std::vector<int64_t>& numels, int64_t bucket_bytes,
                       int64_t bytes_per_element) {
  BucketPlan plan;
  int64_t filled = 0;
  for (size_t i = 0; i < numels.size(); ++i) {
    if (plan.buckets.empty() || filled >= bucket_bytes) {
      plan.buckets.emplace_back();
      filled = 0;
    }
    plan.buckets.back().push_back(i);
    filled += numels[i] * bytes_per_element;
  }
  return plan;
}

}  // namespace kiln::train
