#include "worker/train/grad_sync.h"

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "worker/train/bucket_plan.h"

namespace kiln::train {

namespace {

constexpr int kArrivalTag = 7101;

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}


}  // namespace

GradSyncEngine::GradSyncEngine(const std::vector<torch::Tensor>& params,
                               const GradSyncOptions& options, MpiComm& comm)
    : comm_(comm), options_(options) {
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
  device_ = device;
  // Device memory goes to MPI only with CUDA-aware MPI and the blocking allreduce: OpenMPI 4
  // takes device pointers in blocking collectives, not in MPI_Iallreduce.
  staged_ = options_.stage_through_host ||
            (device.is_cuda() && !(comm_.cuda_aware() && comm_.thread_multiple()));
  const torch::TensorOptions on_device = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const torch::TensorOptions on_host =
      torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device.is_cuda());
  // Gradients become ready roughly from the last layer to the first.
  std::vector<torch::Tensor> ordered(params.rbegin(), params.rend());
  std::vector<int64_t> numels;
  for (const auto& p : ordered) numels.push_back(p.numel());
  BucketPlan plan = PlanBuckets(numels, options_.bucket_bytes);
  buckets_.resize(plan.buckets.size());
  ready_.assign(buckets_.size(), false);
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    int64_t total = 0;
    for (size_t i : plan.buckets[b]) total += numels[i];
    const bool last = b + 1 == plan.buckets.size();
    Bucket& bucket = buckets_[b];
    bucket.buffer = torch::zeros({total + (last ? 2 : 0)}, on_device);
    bucket.host = staged_ ? torch::empty({bucket.buffer.numel()}, on_host) : bucket.buffer;
    bucket.size = static_cast<int>(plan.buckets[b].size());
    int64_t offset = 0;
    for (size_t i : plan.buckets[b]) {
      torch::Tensor p = ordered[i];
      p.mutable_grad() = bucket.buffer.narrow(0, offset, p.numel()).view_as(p);
      offset += p.numel();
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, b](const torch::autograd::variable_list& outputs,
                    const torch::autograd::variable_list&) {
            MarkReady(b);
            return outputs;
          }));
      accumulators_.push_back(std::move(accumulator));
    }
    if (last) control_ = bucket.buffer.narrow(0, total, 2);
  }
  if (comm_.rank() == 0) {
    arrived_.assign(static_cast<size_t>(comm_.size()), -1);
    arrival_recv_.assign(static_cast<size_t>(comm_.size()), -1);
    arrival_requests_.assign(static_cast<size_t>(comm_.size()), MPI_REQUEST_NULL);
    for (int r = 1; r < comm_.size(); ++r) {
      MPI_Irecv(&arrival_recv_[static_cast<size_t>(r)], 1, MPI_INT64_T, r, kArrivalTag,
                MPI_COMM_WORLD, &arrival_requests_[static_cast<size_t>(r)]);
    }
  }
  thread_ = std::thread([this] { CommunicationLoop(); });
}

GradSyncEngine::~GradSyncEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& request : arrival_requests_) {
    if (request != MPI_REQUEST_NULL) {
      MPI_Cancel(&request);
      MPI_Request_free(&request);
    }
  }
  if (arrival_send_request_ != MPI_REQUEST_NULL) MPI_Wait(&arrival_send_request_, MPI_STATUS_IGNORE);
}

void GradSyncEngine::BeginStep(int64_t step) {
  for (auto& b : buckets_) {
    b.buffer.zero_();
    b.pending = b.size;
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::fill(ready_.begin(), ready_.end(), false);
  reduced_ = 0;
  step_ = step;
}

void GradSyncEngine::SetLocalLoss(float loss) { control_[0].fill_(loss); }

void GradSyncEngine::VoteStop() { control_[1].fill_(1.0f); }

// Called by autograd: on the training thread for a CPU graph, on autograd's thread for the
// device for a CUDA one; either way one thread per step, and backward returns after the last.
void GradSyncEngine::MarkReady(size_t bucket) {
  if (--buckets_[bucket].pending > 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_[bucket] = true;
  }
  cv_.notify_all();
}

float GradSyncEngine::FinishStep() {
  // Backward runs every hook before it returns (on the CPU and on CUDA): a bucket still waiting
  // now will wait forever, so say which instead of hanging.
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b].pending > 0) {
      throw std::runtime_error(
          "gradient bucket " + std::to_string(b) + " got " +
          std::to_string(buckets_[b].size - buckets_[b].pending) + " of its " +
          std::to_string(buckets_[b].size) + " gradients this step: every parameter must take "
          "part in every step (and the engine must be created after parameters are loaded)");
    }
  }
  const double start = Now();
  bool said_waiting = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto slice = std::chrono::milliseconds(std::min<Millis>(1000, options_.stall_timeout_ms));
    double next_report = options_.stall_timeout_ms / 1000.0;
    while (!cv_.wait_for(lock, slice, [&] { return reduced_ == buckets_.size(); })) {
      if (!said_waiting && options_.on_waiting) {
        said_waiting = true;
        options_.on_waiting(true);
      }
      // Only with MPI_THREAD_MULTIPLE does the comm thread sit in a blocking allreduce; otherwise
      // it reports stalls itself.
      if (!comm_.thread_multiple()) continue;
      const double waited = Now() - start;
      if (waited < next_report) continue;
      const size_t bucket = reduced_;
      const int64_t step = step_;
      lock.unlock();
      if (comm_.rank() == 0) PollArrivals();
      ReportStall(bucket, step, waited);
      next_report *= 2;
      lock.lock();
    }
  }
  if (said_waiting) options_.on_waiting(false);
  stats_.wait_s += Now() - start;
  ++stats_.steps;
  const float world = static_cast<float>(comm_.size());
  for (auto& b : buckets_) {
    b.buffer.div_(world);
    stats_.bytes_reduced += b.buffer.numel() * static_cast<int64_t>(sizeof(float));
  }
  return control_[0].item<float>();
}

GradSyncStats GradSyncEngine::TakeStats() {
  GradSyncStats out = stats_;
  stats_ = GradSyncStats{};
  return out;
}

void GradSyncEngine::CommunicationLoop() {
  // Copies and synchronizations below act on the buckets' device, not on device 0.
  c10::OptionalDeviceGuard on_device;
  if (device_.is_cuda()) on_device.reset_device(device_);
  while (true) {
    for (size_t b = 0; b < buckets_.size(); ++b) {
      int64_t step;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (ready_[b] && reduced_ == b); });
        if (stop_) return;
        step = step_;
      }
      ReduceBucket(b, step);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++reduced_;
      }
      cv_.notify_all();
    }
  }
}

void GradSyncEngine::ReduceBucket(size_t index, int64_t step) {
  if (index == 0) {
    if (comm_.rank() != 0) {
      if (arrival_send_request_ != MPI_REQUEST_NULL) {
        MPI_Wait(&arrival_send_request_, MPI_STATUS_IGNORE);
      }
      arrival_send_ = step;
      MPI_Isend(&arrival_send_, 1, MPI_INT64_T, 0, kArrivalTag, MPI_COMM_WORLD,
                &arrival_send_request_);
    } else {
      arrived_[0] = step;
      PollArrivals();  // also keeps one receive posted per rank, so arrivals never pile up
    }
  }
  Bucket& bucket = buckets_[index];
  // The autograd hook fired when the kernels writing this bucket were queued, not when they ran.
  // Staged: a synchronous copy on the default stream waits for them. In place on a GPU: wait
  // for the device before MPI reads its memory.
  if (staged_) {
    bucket.host.copy_(bucket.buffer);
  } else if (device_.is_cuda()) {
    torch::cuda::synchronize(device_.index());
  }
  Allreduce(bucket.host.data_ptr<float>(), static_cast<int>(bucket.host.numel()), index, step);
  if (staged_) bucket.buffer.copy_(bucket.host);
}

void GradSyncEngine::Allreduce(float* data, int count, size_t index, int64_t step) {
  if (comm_.thread_multiple()) {
    // The tuned blocking allreduce is the fastest path; stalls are watched by the training
    // thread meanwhile (FinishStep), which MPI_THREAD_MULTIPLE allows.
    MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  MPI_Request request;
  MPI_Iallreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
  const double start = Now();
  double next_report = options_.stall_timeout_ms / 1000.0;
  int done = 0;
  for (int64_t spins = 1;; ++spins) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) break;
    // Yield rather than sleep: the collective advances only inside MPI_Test (and needs every
    // rank's thread to call it promptly, round after round), while a runnable backward on this
    // core still gets it.
    std::this_thread::yield();
    if (spins % 1024 == 0) {
      if (comm_.rank() == 0) PollArrivals();
      const double waited = Now() - start;
      if (waited > next_report) {
        ReportStall(index, step, waited);
        next_report *= 2;
      }
    }
  }
}

void GradSyncEngine::PollArrivals() {
  std::lock_guard<std::mutex> lock(arrivals_mu_);
  for (int r = 1; r < comm_.size(); ++r) {
    auto& request = arrival_requests_[static_cast<size_t>(r)];
    int done = 0;
    while (request != MPI_REQUEST_NULL) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (!done) break;
      arrived_[static_cast<size_t>(r)] = arrival_recv_[static_cast<size_t>(r)];
      MPI_Irecv(&arrival_recv_[static_cast<size_t>(r)], 1, MPI_INT64_T, r, kArrivalTag,
                MPI_COMM_WORLD, &request);
    }
  }
}

void GradSyncEngine::ReportStall(size_t bucket, int64_t step, double waited_s) {
  if (comm_.rank() == 0) {
    std::string missing;
    for (int r = 1; r < comm_.size(); ++r) {
      if (arrived_[static_cast<size_t>(r)] < step) {
        missing += (missing.empty() ? "" : ", ") + std::to_string(r) + " (last at step " +
                   std::to_string(arrived_[static_cast<size_t>(r)]) + ")";
      }
    }
    std::fprintf(stderr, "[rank 0] stall: step %lld, bucket %zu: waiting %.0f s for allreduce; "
                 "ranks not arrived: %s\n", static_cast<long long>(step), bucket, waited_s,
                 missing.empty() ? "none (all arrived; a rank is slow inside the allreduce)"
                                 : missing.c_str());
  } else {
    std::fprintf(stderr, "[rank %d] stall: step %lld, bucket %zu: waiting %.0f s for allreduce "
                 "(rank 0 names the ranks missing)\n", comm_.rank(),
                 static_cast<long long>(step), bucket, waited_s);
  }
  std::fflush(stderr);
}

}  // namespace kiln::train
