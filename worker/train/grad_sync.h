// The gradient sync engine: averages gradients across ranks in fused buckets, each bucket's
// allreduce starting as soon as backward has produced all of its gradients, so communication
// overlaps the rest of backward. No model code here.
//
// Threads: a communication thread owns every MPI call this engine makes. It takes buckets in
// index order (the same on every rank). With MPI_THREAD_MULTIPLE (OpenMPI as Debian builds it)
// it runs the tuned blocking MPI_Allreduce, the fastest path, while the training thread watches
// for stalls. Otherwise it starts MPI_Iallreduce and drives it with MPI_Test in a loop that yields
// the core between tests. OpenMPI does not progress non-blocking collectives by
// itself: they advance only inside MPI_Test, one internal round at a time, and each round needs
// the peer to test too, so sleeping between tests (tried: 20 us doubling to 1 ms) made a 1 MB
// allreduce take ~25 ms. Yielding keeps the rounds fast while a backward that needs the core
// still gets it. Autograd (the training thread) only marks buckets ready, from post-hooks on each
// parameter's gradient accumulator.
//
// Stalls: a rank that does not arrive within stall_timeout_ms gets a report on stderr. Every rank
// tells rank 0 which step it reached (a small non-blocking send), so rank 0 names the ranks that
// have not arrived; the others report which bucket they wait for. The wait goes on (the job's
// supervisor decides whether to kill it).
//
// Devices: buckets live on the parameters' device. MPI reduces host memory unless it reports CUDA
// awareness (MpiComm::cuda_aware) and runs the blocking allreduce (MPI_THREAD_MULTIPLE), so on a
// GPU each bucket is normally staged: the communication thread copies it into a pinned host twin,
// reduces that, and copies it back. Those copies are synchronous on the default CUDA stream, so
// they come after the backward kernels that wrote the gradients; with CUDA-aware MPI the thread
// synchronizes the device instead before MPI reads the bucket. On the CPU the bucket is reduced
// in place. GradSyncOptions::stage_through_host forces staging on the CPU
// too, so the staged path is tested on machines without a GPU.
//
// Contract: every parameter gets a gradient in every step (as DDP without
// find_unused_parameters); each parameter's .grad is a view into its bucket. All parameters are
// on one device.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <mpi.h>
#include <torch/torch.h>

#include "common/clock.h"
#include "worker/train/mpi_comm.h"

namespace kiln::train {

struct GradSyncOptions {
  int64_t bucket_bytes = 4 << 20;
  Millis stall_timeout_ms = 120000;
  bool stage_through_host = false;  // stage even when MPI could reduce the buckets in place
  // Called with true when the training thread has waited a second for the allreduce, and with
  // false when that wait ends (the rank's step beacon: worker/train/step_beacon_writer.h).
  std::function<void(bool)> on_waiting;
};

struct GradSyncStats {
  double wait_s = 0;           // training thread waiting for allreduce after backward
  int64_t bytes_reduced = 0;   // per rank
  int64_t steps = 0;
};

class GradSyncEngine {
 public:
  // `params` in the model's registration order. Starts the communication thread.
  GradSyncEngine(const std::vector<torch::Tensor>& params, const GradSyncOptions& options,
                 MpiComm& comm);
  ~GradSyncEngine();
  GradSyncEngine(const GradSyncEngine&) = delete;
  GradSyncEngine& operator=(const GradSyncEngine&) = delete;

  size_t bucket_count() const { return buckets_.size(); }

  // Before forward: zeroes every bucket.
  void BeginStep(int64_t step);
  // After forward, before backward: this rank's loss, reduced along with the gradients.
  void SetLocalLoss(float loss);
  // This rank asks the gang to stop after this step (SIGTERM); reduced along with the gradients,
  // so every rank learns it at the same step. Cleared by BeginStep.
  void VoteStop();
  // After FinishStep: whether any rank voted to stop in this step.
  bool StopVoted() const { return control_[1].item<float>() > 0; }
  // Whether buckets are copied through host memory for MPI.
  bool staged() const { return staged_; }
  // After backward: waits until every bucket is reduced, averages, and returns the mean loss
  // over all ranks. Throws std::runtime_error if a parameter got no gradient in this backward.
  float FinishStep();
  GradSyncStats TakeStats();

 private:
  struct Bucket {
    torch::Tensor buffer;       // float32 on the parameters' device: their gradients (the last
                                // bucket also holds the loss and stop-vote slots)
    torch::Tensor host;         // what MPI reduces: a host twin of buffer when staged, else buffer
    int pending = 0;            // gradients still to arrive this step (written by autograd's
                                // thread for this device only; read after backward returned)
    int size = 0;               // parameters in it
  };
  void MarkReady(size_t bucket);
  void CommunicationLoop();
  void ReduceBucket(size_t index, int64_t step);
  // Sums `count` floats at `data` (host memory, or device memory with CUDA-aware MPI) across
  // ranks, reporting stalls.
  void Allreduce(float* data, int count, size_t index, int64_t step);
  void ReportStall(size_t bucket, int64_t step, double waited_s);
  void PollArrivals();

  MpiComm& comm_;
  GradSyncOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keeps the hooks alive
  torch::Tensor control_;  // [loss, stop vote]: the tail of the last bucket's buffer
  torch::Device device_ = torch::kCPU;  // the parameters' and buckets' device
  bool staged_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> ready_;       // guarded by mu_
  size_t reduced_ = 0;            // buckets reduced this step, guarded by mu_
  int64_t step_ = -1;             // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  std::thread thread_;

  // Rank 0: the last step each rank reported reaching. Others: the pending arrival send.
  std::mutex arrivals_mu_;  // PollArrivals may run on either thread
  std::vector<int64_t> arrived_;
  std::vector<int64_t> arrival_recv_;
  std::vector<MPI_Request> arrival_requests_;
  int64_t arrival_send_ = 0;
  MPI_Request arrival_send_request_ = MPI_REQUEST_NULL;

  GradSyncStats stats_;
};

}  // namespace kiln::train
