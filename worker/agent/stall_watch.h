// Hang detection for one attempt on one node: fed the ranks' step beacons (common/step_beacon.h)
// as the agent reads them, it says when a rank has made no progress for the stall timeout, and
// which rank to blame. Pure: no I/O, the time is an argument.
//
// In data-parallel training every rank waits for the slowest in each step's allreduce, so when
// one rank hangs they all stop. The one to blame is a stalled rank that is not waiting in the
// allreduce; when every stalled rank here is waiting, the culprit runs elsewhere (a node of the
// same gang, whose agent names it first) or inside the collective itself, so this node speaks
// only after twice the timeout, or at once when the whole gang runs here.
//
// The timeout is the job's `train.stall_timeout_s` when it sets one, else the larger of 60 s and
// 20 times the median step time seen so far.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/step_beacon.h"

namespace kiln::agent {

struct StallVerdict {
  std::vector<int> ranks;  // the ranks to blame (not waiting), or every stalled rank here
  int64_t step = 0;        // the last step the first of them finished
  Millis silent_ms = 0;    // how long the first of them has made no progress
  bool all_waiting = false;
};

class StallWatch {
 public:
  static constexpr Millis kMinimumTimeoutMs = 60000;
  static constexpr int kStepTimeFactor = 20;

  // `fixed_timeout_ms`: the job's own setting, if any. `whole_gang_here`: every rank of the
  // attempt runs on this node.
  StallWatch(std::optional<Millis> fixed_timeout_ms, bool whole_gang_here);

  void Observe(int rank, const StepBeacon& beacon, Millis now);
  Millis TimeoutMs() const;
  std::optional<StallVerdict> Check(Millis now) const;
  // "Stalled: rank 3 on n2 made no step for 61 s after step 1200"
  static std::string Describe(const StallVerdict& verdict, const std::string& node);

 private:
  struct Rank {
    StepBeacon last;
    Millis changed_at = 0;  // when its beat last grew (or when first seen)
    Millis step_seen_at = 0;
  };
  std::optional<Millis> fixed_timeout_ms_;
  bool whole_gang_here_;
  std::map<int, Rank> ranks_;
  std::vector<double> step_ms_;  // recent step times, from steps seen to advance
};

}  // namespace kiln::agent
