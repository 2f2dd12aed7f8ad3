// Which samples each rank trains on. Pure and torch-free.
// Every epoch is one permutation of the training set from (seed, epoch), the same on every rank.
// Step s of an epoch uses the global batch perm[s*G, (s+1)*G) with G = batch * world, and rank r
// trains perm[s*G + r*batch, s*G + (r+1)*batch). A trailing partial global batch is dropped, so
// every step averages gradients over exactly G samples: a 2-rank step equals a 1-rank step with
// twice the batch.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::train {

std::vector<int64_t> EpochOrder(int64_t samples, uint64_t seed, int64_t epoch);

// The seed of rank `rank`'s random stream (dropout masks) at global step `step`. Every step
// reseeds from it, so the random state is a function of (seed, rank, step): a resumed run draws
// exactly what the uninterrupted one did, without storing generator states in checkpoints.
uint64_t StepSeed(uint64_t seed, int rank, int64_t step);

struct ShardPlan {
  int64_t samples = 0;
  int64_t batch = 1;  // per rank
  int world = 1;
  int64_t GlobalBatch() const { return batch * world; }
  int64_t StepsPerEpoch() const { return samples / GlobalBatch(); }
  // Offset into the epoch order of rank `rank`'s slice at step `step_in_epoch`.
  int64_t SliceStart(int64_t step_in_epoch, int rank) const {
    return step_in_epoch * GlobalBatch() + rank * batch;
  }
};

}  // namespace kiln::train
