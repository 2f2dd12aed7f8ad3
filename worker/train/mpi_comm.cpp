#include "worker/train/mpi_comm.h"

#include <mpi.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace kiln::train {

namespace {
// MPI counts are int: large buffers go in chunks.
constexpr size_t kMaxChunk = INT_MAX / 2;
}  // namespace

MpiComm::MpiComm(int* argc, char*** argv) {
  // The gradient sync engine calls MPI from its own thread, serialized with the training thread's
  // calls (which happen only between steps).
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  if (provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr, "kiln-train: this MPI provides thread level %d; the gradient sync "
                         "engine needs MPI_THREAD_SERIALIZED\n", provided);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  thread_multiple_ = provided >= MPI_THREAD_MULTIPLE;
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  cuda_aware_ = MPIX_Query_cuda_support() == 1;
#endif
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_free(&local);
}

MpiComm::~MpiComm() { MPI_Finalize(); }

void MpiComm::Complete(MPI_Request* request) {
  const auto start = std::chrono::steady_clock::now();
  bool said_waiting = false;
  int done = 0;
  for (int64_t spins = 1;; ++spins) {
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) break;
    std::this_thread::yield();
    if (!said_waiting && wait_hook_ && spins % 1024 == 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::seconds(1)) {
      said_waiting = true;
      wait_hook_(true);
    }
  }
  if (said_waiting) wait_hook_(false);
}

void MpiComm::Broadcast(float* data, size_t count, int root) {
  for (size_t off = 0; off < count; off += kMaxChunk) {
    int n = static_cast<int>(std::min(kMaxChunk, count - off));
    MPI_Request request;
    MPI_Ibcast(data + off, n, MPI_FLOAT, root, MPI_COMM_WORLD, &request);
    Complete(&request);
  }
}

void MpiComm::AllreduceSum(float* data, size_t count) {
  for (size_t off = 0; off < count; off += kMaxChunk) {
    int n = static_cast<int>(std::min(kMaxChunk, count - off));
    MPI_Request request;
    MPI_Iallreduce(MPI_IN_PLACE, data + off, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
    Complete(&request);
  }
}

void MpiComm::AllreduceSum(double* data, size_t count) {
  for (size_t off = 0; off < count; off += kMaxChunk) {
    int n = static_cast<int>(std::min(kMaxChunk, count - off));
    MPI_Request request;
    MPI_Iallreduce(MPI_IN_PLACE, data + off, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &request);
    Complete(&request);
  }
}

void MpiComm::Barrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  Complete(&request);
}

void MpiComm::Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace kiln::train
