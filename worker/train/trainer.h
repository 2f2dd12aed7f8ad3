// One rank of data-parallel training. Every rank runs the same Trainer::Run; rank 0 also
// reports progress and writes checkpoints.
//
// Per step: zero the fused gradient buffer; forward and backward on this rank's shard; one
// MPI allreduce of the buffer (all gradients, plus the local loss in its last element); divide by
// the world size; optimizer step. Every parameter's .grad is a view into that one buffer, so
// gradients are reduced with no copies.
#pragma once

#include <csignal>
#include <string>

#include "common/job_spec.h"
#include "common/status.h"
#include "worker/train/mpi_comm.h"
#include "worker/train/progress_reporter.h"

namespace kiln::train {

struct TrainerOptions {
  std::string run_dir;
  std::string checkpoint_dir;   // default: <run_dir>/checkpoints
  std::string resume_path;      // checkpoint to resume from, or empty
  int64_t max_steps = 0;        // overrides train.max_steps when > 0
  std::string dump_params;      // when set, each rank writes its final parameters (raw float32)
                                // to <dump_params>.rank<r>
  int threads = 1;              // intra-op threads of this rank
  // Set (by a SIGTERM handler) to stop early: the gang agrees on a step, rank 0 saves a
  // checkpoint there, and Run returns with stopped() true.
  const volatile std::sig_atomic_t* stop_requested = nullptr;
};

class Trainer {
 public:
  Trainer(const JobSpec& spec, const TrainerOptions& options, MpiComm& comm,
          ProgressReporter& reporter);
  // Trains to the end. Errors that every rank sees the same way (bad data path) are returned;
  // the caller aborts the MPI job.
  Status Run();
  // Run returned early because a stop was requested (the run is not finished).
  bool stopped() const { return stopped_; }
  // Rank 0 under an agent: the stop marker (common/rank_failure.h) is written.
  bool stop_marked() const { return stop_marked_; }

 private:
  const JobSpec& spec_;
  TrainerOptions options_;
  MpiComm& comm_;
  bool stopped_ = false;
  bool stop_marked_ = false;
  ProgressReporter& reporter_;
};

}  // namespace kiln::train
