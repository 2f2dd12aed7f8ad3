// A rank's side of its step beacon (common/step_beacon.h): keeps <run-dir>/steps/rank-<r> open and
// rewrites it in place, at most every 200 ms unless the waiting flag changes, so that a step
// costs no system call. Torch-free. Without a run dir (kiln-train run by hand) it does nothing.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "common/step_beacon.h"

namespace kiln::train {

class StepBeaconWriter {
 public:
  StepBeaconWriter(const std::string& run_dir, int rank);
  ~StepBeaconWriter();
  StepBeaconWriter(const StepBeaconWriter&) = delete;
  StepBeaconWriter& operator=(const StepBeaconWriter&) = delete;

  // A training step finished.
  void Step(int64_t step);
  // Other work (an evaluation batch) went on.
  void Beat();
  // The rank waits (or no longer waits) for the others in the gradient allreduce. Thread-safe
  // with the calls above.
  void Waiting(bool waiting);

 private:
  void Write(bool force);
  std::mutex mu_;
  int fd_ = -1;
  StepBeacon beacon_;
  int64_t written_at_ms_ = 0;
};

}  // namespace kiln::train
