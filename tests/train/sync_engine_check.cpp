// kiln-sync-check: run under mpirun by the integration tests. Builds many small parameters (so
// the engine makes several buckets), gives each rank the gradient (rank + 1) everywhere, and checks
// that after a step every gradient equals the exact mean (world + 1) / 2, and the loss slot the
// mean of the ranks' losses. With --stall-rank R, rank R sleeps before backward so the others
// report a stall naming it. With --stage, buckets are staged through host memory as on a GPU
// without CUDA-aware MPI; with --cuda, the parameters live on this rank's GPU (when there is one).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <torch/torch.h>

#include "worker/train/grad_sync.h"
#include "worker/train/mpi_comm.h"

int main(int argc, char** argv) {
  kiln::train::MpiComm comm(&argc, &argv);
  int stall_rank = -1;
  bool stage = false;
  torch::Device device = torch::kCPU;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--stall-rank" && i + 1 < argc) stall_rank = std::atoi(argv[i + 1]);
    if (arg == "--stage") stage = true;
    if (arg == "--cuda" && torch::cuda::is_available()) {
      device = torch::Device(torch::kCUDA,
                             static_cast<torch::DeviceIndex>(comm.local_rank() %
                                                             torch::cuda::device_count()));
    }
  }
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 40; ++i) {
    params.push_back(torch::zeros({100 + i}, torch::TensorOptions().device(device)).requires_grad_());
  }
  // 1 KiB buckets over ~20 KiB of parameters: about 20 buckets.
  kiln::train::GradSyncEngine sync(params, {1024, 1000, stage}, comm);
  const float mine = static_cast<float>(comm.rank() + 1);
  const float expected = static_cast<float>(comm.size() + 1) / 2.0f;
  int failures = 0;
  for (int64_t step = 0; step < 3; ++step) {
    sync.BeginStep(step);
    torch::Tensor loss = torch::zeros({});
    for (auto& p : params) loss = loss + (p * mine).sum();
    sync.SetLocalLoss(mine);
    if (comm.rank() == stall_rank && step == 1) ::sleep(3);
    loss.backward();
    const float mean_loss = sync.FinishStep();
    if (mean_loss != expected) ++failures;
    for (auto& p : params) {
      if (!torch::all(p.grad() == expected).item<bool>()) ++failures;
    }
  }
  std::printf("rank %d: %zu buckets%s on %s, %d failures\n", comm.rank(), sync.bucket_count(),
              sync.staged() ? " staged" : "", device.str().c_str(), failures);
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}
