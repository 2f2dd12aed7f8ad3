// How a rank tells its agent why it failed. A rank that ends with an error writes
// <run-dir>/rank-failures/rank-<r>.json before it aborts the MPI job:
//   {"rank": 3, "error": "cannot open /data/x.csv: No such file or directory", "permanent": true}
// The agent puts the first of them (lowest rank) in its job_exited report, so the job's reason is
// the rank's own error instead of mpirun's exit code, and the scheduler fails a job whose error
// cannot go away on a retry at once instead of retrying it.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"

namespace kiln {

struct RankFailure {
  int rank = 0;
  std::string error;       // one line
  bool permanent = false;  // the same inputs fail the same way on every retry
};

// Errors that a retry cannot cure: the spec, the data, the model file or the checkpoint are
// wrong, missing or unreadable (InvalidArgument, NotFound, PermissionDenied). Everything else
// (a lost node, an MPI or LibTorch runtime error, a full disk) may go away.
bool IsPermanentFailure(StatusCode code);

// The first line of `message`, at most 500 bytes (cut on a UTF-8 boundary), with control
// characters made spaces: safe to show in a terminal and a log.
std::string FirstErrorLine(const std::string& message);

std::string RankFailureDir(const std::string& run_dir);
// Removes what an earlier run in this run dir left (the agent, before it starts mpirun).
void ClearRankReports(const std::string& run_dir);
Status WriteRankFailure(const std::string& run_dir, const RankFailure& failure);
// The failure of the lowest rank that wrote one, if any did.
std::optional<RankFailure> ReadFirstRankFailure(const std::string& run_dir);

// A gang that stopped on SIGTERM after saving a checkpoint at `step`: under an agent every rank
// then exits 0 (a rank exiting non-zero makes mpirun abort the others and wait its kill timeout
// before it exits), and rank 0 leaves <run-dir>/stopped.json for the agent, which reports the
// attempt as stopped (kStoppedExitCode) rather than finished.
constexpr int kStoppedExitCode = 143;  // 128 + SIGTERM, also kiln-train's own code by hand
Status WriteStopMarker(const std::string& run_dir, int64_t step);
std::optional<int64_t> ReadStopMarker(const std::string& run_dir);

}  // namespace kiln
