// How gradients are grouped into allreduce buckets. Pure and torch-free.
// Parameters are taken in the order their gradients become ready during backward (the reverse of
// the model's registration order), and packed greedily: a bucket is closed once it holds at least
// bucket_bytes (a single tensor larger than that gets a bucket of its own). Every rank computes
// the same plan from the same model, so buckets are reduced in the same order everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kiln::train {

struct BucketPlan {
  // buckets[b] lists indices into the numels passed in, in that order.
  std::vector<std::vector<size_t>> buckets;
};

BucketPlan PlanBuckets(const std::vector<int64_t>& numels, int64_t bucket_bytes,
                       int64_t bytes_per_element = 4);

}  // namespace kiln::train
