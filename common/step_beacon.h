// How each rank shows its agent that it is making progress, so that the agent can tell a hung
// rank (stopped, or stuck outside a collective) from ranks that only wait for it. Every rank
// keeps one small file, <run-dir>/steps/rank-<r>, rewritten in place (at most every 200 ms):
//   step 1200 beat 1377 waiting 0
// `step`: the last training step the rank finished; `beat`: a counter that grows with any work
// (steps, evaluation); `waiting`: 1 while the rank waits for the others in the gradient
// allreduce. The agent reads these files as a regular file of at most 256 bytes, never through a
// symlink (the job's own processes write them). Pure codec and paths; no I/O here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kiln {

struct StepBeacon {
  int64_t step = 0;
  int64_t beat = 0;
  bool waiting = false;
};

constexpr size_t kStepBeaconMaxBytes = 256;

std::string StepBeaconDir(const std::string& run_dir);
std::string StepBeaconPath(const std::string& run_dir, int rank);
// The rank of a file name in StepBeaconDir ("rank-3" -> 3), or nullopt.
std::optional<int> RankOfStepBeacon(const std::string& file_name);

// Fixed width (padded with spaces), so that rewriting it in place never leaves a longer old tail.
std::string FormatStepBeacon(const StepBeacon& beacon);
std::optional<StepBeacon> ParseStepBeacon(const std::string& text);

}  // namespace kiln
