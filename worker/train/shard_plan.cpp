#include "worker/train/shard_plan.h"

#include <numeric>
#include <random>

namespace kiln::train {

namespace {
uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

std::vector<int64_t> EpochOrder(int64_t samples, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch))));
  // Fisher-Yates with our own index draw: std::shuffle's use of the engine is
  // implementation-defined, and every rank (and every build) must agree.
  for (int64_t i = samples - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

uint64_t StepSeed(uint64_t seed, int rank, int64_t step) {
  return SplitMix64(SplitMix64(seed ^ 0xd40u) ^ SplitMix64(static_cast<uint64_t>(rank) << 40 ^
                                                           static_cast<uint64_t>(step)));
}

}  // namespace kiln::train
