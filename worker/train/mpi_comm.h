// The MPI calls kiln-train makes, all from the main thread, in the same order on every rank.
// Torch-free: works on raw float buffers.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <functional>
#include <string>

namespace kiln::train {

class MpiComm {
 public:
  // MPI_Init; MPI_Finalize in the destructor. One per process.
  MpiComm(int* argc, char*** argv);
  ~MpiComm();
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  // MPI_THREAD_MULTIPLE: any thread may call MPI at any time.
  bool thread_multiple() const { return thread_multiple_; }
  // The MPI library can reduce buffers in CUDA device memory (OpenMPI built with CUDA, asked at
  // run time). Debian's OpenMPI is not.
  bool cuda_aware() const { return cuda_aware_; }

  // Called with true once a collective below has waited a second for the other ranks, and with
  // false when it completes (the rank's step beacon: worker/train/step_beacon_writer.h). The
  // collectives are non-blocking calls completed by a yielding test loop, so that the wait is seen.
  void SetWaitHook(std::function<void(bool)> hook) { wait_hook_ = std::move(hook); }

  void Broadcast(float* data, size_t count, int root);
  void AllreduceSum(float* data, size_t count);
  void AllreduceSum(double* data, size_t count);
  void Barrier();
  // Ends every rank of the job (used when one rank hits an error the others cannot see).
  [[noreturn]] void Abort(int code);

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  bool thread_multiple_ = false;
  bool cuda_aware_ = false;
  std::function<void(bool)> wait_hook_;
  void Complete(MPI_Request* request);
};

}  // namespace kiln::train
