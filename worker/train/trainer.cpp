#include "worker/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <torch/torch.h>

#include "common/file_util.h"
#include "common/rank_failure.h"
#include "worker/train/checkpoint.h"
#include "worker/train/datasets.h"
#include "worker/train/fused_adam.h"
#include "worker/train/grad_sync.h"
#include "worker/train/step_beacon_writer.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/model.h"
#include "worker/train/shard_plan.h"

namespace kiln::train {

using nlohmann::json;

namespace {

constexpr int64_t kLogEverySteps = 100;
constexpr double kReportEverySeconds = 1.0;
// Evaluation batch: small enough that a CNN's activations stay in cache and are reused by the
// allocator. 2,000 took 5.3 s for the Fashion-MNIST test set on one core, 128 takes 3.0 s.
constexpr int64_t kEvalBatch = 128;

double Seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o,
                                                       const std::vector<torch::Tensor>& params) {
  if (o.type == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov)
                    .weight_decay(o.weight_decay));
  }
  if (o.type == "adamw") {
    return std::make_unique<FusedAdamW>(
        params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  }
  return std::make_unique<FusedAdam>(
      params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
}

// CUDA when the job asked for GPUs and this LibTorch sees one, else the CPU. Under the agent,
// gpu_binding.h has narrowed CUDA_VISIBLE_DEVICES to this rank's GPUs, so its first is device 0;
// started by hand on a node whose GPUs are all visible, local rank r takes device r * gpus/rank.
torch::Device TrainingDevice(const JobSpec& spec, int rank, int local_rank) {
  if (spec.resources.gpus_per_rank <= 0) return torch::kCPU;
  if (!torch::cuda::is_available()) {
    if (local_rank == 0) {  // once per node
      std::fprintf(stderr, "[rank %d] resources.gpus_per_rank is %d but this LibTorch sees no "
                   "CUDA device (a CPU build, or no GPU bound to the rank): training on the CPU\n",
                   rank, spec.resources.gpus_per_rank);
    }
    return torch::kCPU;
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  const int64_t index =
      count > spec.resources.gpus_per_rank ? (local_rank * spec.resources.gpus_per_rank) % count : 0;
  return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(index));
}

struct EvalResult {
  double accuracy = 0;
  double loss = 0;
};

// Collective: every rank evaluates its slice of the test set; sums are allreduced.
EvalResult Evaluate(const JobSpec& spec, torch::nn::Sequential& model, const torch::Tensor& x,
                    const torch::Tensor& y, torch::Device device, MpiComm& comm) {
  torch::NoGradGuard no_grad;
  model->eval();  // dropout off while evaluating; back to training mode before returning
  const int64_t n = x.size(0);
  const int64_t per_rank = (n + comm.size() - 1) / comm.size();
  const int64_t begin = std::min(n, per_rank * comm.rank());
  const int64_t end = std::min(n, begin + per_rank);
  double sums[3] = {0, 0, 0};  // correct, count, loss * count
  for (int64_t i = begin; i < end; i += kEvalBatch) {
    const int64_t len = std::min(kEvalBatch, end - i);
    torch::Tensor out = model->forward(x.narrow(0, i, len).to(device));
    torch::Tensor labels = y.narrow(0, i, len).to(device);
    sums[0] += static_cast<double>(CountCorrect(spec, out, labels));
    sums[1] += static_cast<double>(len);
    sums[2] += ComputeLoss(spec, out, labels).item<double>() * static_cast<double>(len);
  }
  model->train();
  comm.AllreduceSum(sums, 3);
  return {sums[0] / std::max(1.0, sums[1]), sums[2] / std::max(1.0, sums[1])};
}

}  // namespace

Trainer::Trainer(const JobSpec& spec, const TrainerOptions& options, MpiComm& comm,
                 ProgressReporter& reporter)
    : spec_(spec), options_(options), comm_(comm), reporter_(reporter) {}

Status Trainer::Run() {
  const bool leader = comm_.rank() == 0;
  const int world = comm_.size();
  at::set_num_threads(options_.threads);
  torch::manual_seed(spec_.train.seed);

  auto loaded = LoadDataset(spec_);
  if (!loaded.ok()) return loaded.status();
  Dataset data = std::move(loaded).value();
  ShardPlan plan{data.train_x.size(0), spec_.train.batch_size, world};
  if (plan.StepsPerEpoch() == 0) {
    return Status::InvalidArgument(
        "train.batch_size: batch_size x ranks = " + std::to_string(plan.GlobalBatch()) +
        " is more than the " + std::to_string(plan.samples) + " training samples");
  }

  // csv without data.features: the training file's header says how many.
  JobSpec model_spec = spec_;
  if (model_spec.data.features == 0) {
    model_spec.data.features = static_cast<int>(data.train_x.size(1));
  }
  auto built = TryBuildModel(model_spec);
  if (!built.ok()) return built.status();
  torch::nn::Sequential model = *built;
  const torch::Device device = TrainingDevice(spec_, comm_.rank(), comm_.local_rank());
  // New tensors, CUDA contexts and pinned memory go to this rank's GPU, not to device 0.
  c10::OptionalDeviceGuard on_device;
  if (device.is_cuda()) on_device.reset_device(device);
  model->to(device);
  std::vector<torch::Tensor> params = model->parameters();
  int64_t numel = 0;
  for (const auto& p : params) numel += p.numel();
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> pieces;
    for (const auto& p : params) pieces.push_back(p.reshape({-1}));
    torch::Tensor flat_params = torch::cat(pieces).to(torch::kCPU).contiguous();
    comm_.Broadcast(flat_params.data_ptr<float>(), static_cast<size_t>(numel), 0);
    int64_t offset = 0;
    for (auto& p : params) {
      p.copy_(flat_params.narrow(0, offset, p.numel()).view_as(p));
      offset += p.numel();
    }
  }
  auto optimizer = MakeOptimizer(spec_.train.optimizer, params);

  int64_t step = 0;
  json last_metrics = json::object();
  if (!options_.resume_path.empty()) {
    auto state = LoadCheckpoint(options_.resume_path, *model, *optimizer, device);
    if (!state.ok()) return state.status();
    step = state->step;
    last_metrics = state->metrics;
    const int64_t global =
        state->global_batch > 0 ? state->global_batch : plan.batch * state->world_size;
    if (state->world_size != world) {
      // A different world size keeps the global batch, so a step still means the same samples
      // and the same position in the epoch; each rank's share changes.
      if (global % world != 0) {
        return Status::InvalidArgument(
            "resources.ranks: the checkpoint was written by " + std::to_string(state->world_size) +
            " ranks with " + std::to_string(global) + " samples per step, which " + std::to_string(world) + " ranks cannot share evenly");
      }
      plan.batch = global / world;
    }
    if (leader) {
      std::printf("[rank 0] resumed from %s at step %lld (saved with %lld ranks, now %d; "
                  "%lld samples per rank per step)\n",
                  options_.resume_path.c_str(), static_cast<long long>(step),
                  static_cast<long long>(state->world_size), world,
                  static_cast<long long>(plan.batch));
    }
  }

  // Gradients live in the engine's buckets; each .grad is a view into one. Made after a resume:
  // loading a checkpoint replaces the parameters' storage (Tensor::set_), which drops the gradient
  // accumulators the engine hooks into.
  // Shows this rank's agent that it makes progress (hang detection: worker/agent/stall_watch.h).
  StepBeaconWriter beacon(options_.run_dir, comm_.rank());
  // Waits in the other collectives (evaluation, a stop's barrier) count as waiting too; the hook
  // is cleared before the beacon goes.
  comm_.SetWaitHook([&beacon](bool waiting) { beacon.Waiting(waiting); });
  struct ClearHook {
    MpiComm& comm;
    ~ClearHook() { comm.SetWaitHook(nullptr); }
  } clear_hook{comm_};
  GradSyncOptions sync_options;
  sync_options.bucket_bytes = static_cast<int64_t>(spec_.train.bucket_mb * (1 << 20));
  sync_options.stall_timeout_ms = static_cast<Millis>(spec_.train.StallReportAfterS() * 1000);
  sync_options.on_waiting = [&beacon](bool waiting) { beacon.Waiting(waiting); };
  GradSyncEngine sync(params, sync_options, comm_);

  const int64_t steps_per_epoch = plan.StepsPerEpoch();
  int64_t total_steps = steps_per_epoch * spec_.train.epochs;
  const int64_t max_steps = options_.max_steps > 0 ? options_.max_steps : spec_.train.max_steps;
  if (max_steps > 0) total_steps = std::min(total_steps, max_steps);
  const std::string ckpt_dir = options_.checkpoint_dir.empty() ? options_.run_dir + "/checkpoints"
                                                               : options_.checkpoint_dir;
  std::filesystem::create_directories(ckpt_dir);
  if (leader) {
    std::printf("[rank 0] training %s: %d ranks x batch %d, %lld samples, %lld steps/epoch, "
                "%lld steps, %lld parameters in %zu allreduce buckets%s, %d threads/rank, on %s\n",
                spec_.name.c_str(), world, static_cast<int>(plan.batch),
                static_cast<long long>(plan.samples), static_cast<long long>(steps_per_epoch),
                static_cast<long long>(total_steps), static_cast<long long>(numel),
                sync.bucket_count(), sync.staged() ? " (staged through host memory)" : "",
                options_.threads, device.str().c_str());
    if (step >= total_steps) {
      std::printf("[rank 0] nothing to train: the checkpoint resumed from is at step %lld, and "
                  "train.epochs %d (which counts the resumed epochs too) ends at step %lld\n",
                  static_cast<long long>(step), spec_.train.epochs,
                  static_cast<long long>(total_steps));
    }
    std::fflush(stdout);
  }

  nlohmann::json input = nlohmann::json::object();
  if (spec_.data.type == "csv") {
    input = {{"features", model_spec.data.features},
             {"feature_columns", data.feature_names},
             {"label_column", spec_.data.label_column}};
  }
  int64_t saved_step = -1;
  auto save = [&](int64_t epoch) {
    if (!leader) return;
    char name[64];
    std::snprintf(name, sizeof name, "/step-%010lld.pt", static_cast<long long>(step));
    CheckpointState state{step, epoch, world, plan.GlobalBatch(), last_metrics, input};
    auto saved = SaveCheckpoint(ckpt_dir + name, *model, *optimizer, state);
    if (!saved.ok()) {
      std::printf("[rank 0] checkpoint at step %lld failed: %s\n", static_cast<long long>(step),
                  saved.status().ToString().c_str());
      return;
    }
    saved_step = step;
    // Under an agent, the agent rotates the files once it has uploaded them.
    if (!reporter_.connected()) RemoveAllButNewest(ckpt_dir, ".pt", spec_.checkpoint.keep_last);
    reporter_.Checkpoint(step, epoch, last_metrics, saved->path, saved->bytes, saved->sha256);
    std::printf("[rank 0] checkpoint step %lld (%lld bytes)\n", static_cast<long long>(step),
                static_cast<long long>(saved->bytes));
    std::fflush(stdout);
  };

  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  double window_loss = 0, window_start = Seconds(), epoch_start = Seconds(), last_report = 0;
  int64_t window_steps = 0;
  const int64_t batch = plan.batch;
  // Time in training steps only (not evaluation or checkpoints), after kWarmupSteps steps that
  // pay for first allocations, for throughput figures comparable across frameworks.
  constexpr int64_t kWarmupSteps = 5;
  double step_time_s = 0;
  const int64_t first_step = step;

  model->train();
  while (step < total_steps) {
    const int64_t epoch = step / steps_per_epoch;
    const int64_t in_epoch = step % steps_per_epoch;
    if (epoch != order_epoch) {
      order = EpochOrder(plan.samples, spec_.train.seed, epoch);
      order_epoch = epoch;
    }
    const double step_start = Seconds();
    torch::Tensor index = torch::from_blob(order.data() + plan.SliceStart(in_epoch, comm_.rank()),
                                           {batch}, torch::kInt64);
    torch::Tensor x = data.train_x.index_select(0, index).to(device);
    torch::Tensor y = data.train_y.index_select(0, index).to(device);

    if (spec_.model.dropout > 0) {
      torch::manual_seed(StepSeed(spec_.train.seed, comm_.rank(), step));
    }
    sync.BeginStep(step);
    torch::Tensor loss = ComputeLoss(spec_, model->forward(x), y);
    sync.SetLocalLoss(loss.item<float>());
    if (options_.stop_requested != nullptr && *options_.stop_requested) sync.VoteStop();
    loss.backward();
    const float global_loss = sync.FinishStep();
    const bool stop_after_this_step = sync.StopVoted();
    // Gradients are identical on every rank here, so clipping and the schedule agree everywhere.
    if (spec_.train.grad_clip_norm > 0) {
      torch::nn::utils::clip_grad_norm_(params, spec_.train.grad_clip_norm);
    }
    const double lr = LearningRate(spec_.train.lr_schedule, spec_.train.optimizer.lr, step,
                                   total_steps);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
    optimizer->step();
    ++step;
    beacon.Step(step);
    if (step - first_step > kWarmupSteps) step_time_s += Seconds() - step_start;
    window_loss += global_loss;
    ++window_steps;

    const bool epoch_end = step % steps_per_epoch == 0 || step == total_steps;
    const double now = Seconds();
    if (leader && (epoch_end || now - last_report >= kReportEverySeconds ||
                   step % kLogEverySteps == 0)) {
      const double elapsed = std::max(1e-9, now - window_start);
      const double rate = static_cast<double>(window_steps * plan.GlobalBatch()) / elapsed;
      GradSyncStats sync_stats = sync.TakeStats();
      json report = {{"step", step},   {"total_steps", total_steps},
                     {"epoch", epoch + 1}, {"epochs", spec_.train.epochs},
                     {"loss", window_loss / static_cast<double>(window_steps)},
                     {"samples_per_s", rate},
                     {"lr", LearningRate(spec_.train.lr_schedule, spec_.train.optimizer.lr,
                                         step - 1, total_steps)},
                     // Time the training thread waited for allreduce after backward (not hidden
                     // by overlap), the rest of the window, and the bytes each rank reduced.
                     {"allreduce_wait_s", sync_stats.wait_s},
                     {"compute_s", elapsed - sync_stats.wait_s},
                     {"bytes_reduced", sync_stats.bytes_reduced}};
      last_metrics["loss"] = report["loss"];
      if (step % kLogEverySteps == 0) {
        std::printf("[rank 0] epoch %lld step %lld/%lld loss %.4f %.0f samples/s\n",
                    static_cast<long long>(epoch + 1), static_cast<long long>(step),
                    static_cast<long long>(total_steps), report["loss"].get<double>(), rate);
        std::fflush(stdout);
      }
      reporter_.Progress(report);
      last_report = now;
      window_loss = 0;
      window_steps = 0;
      window_start = now;
    }
    if (epoch_end) {
      const double epoch_time = Seconds() - epoch_start;
      // Evaluation metrics are named after the set: test_* or val_* (data.validation_split).
      json eval_metrics = json::object();
      const double eval_start = Seconds();
      if (data.test_x.defined()) {
        beacon.Beat();
        EvalResult eval = Evaluate(spec_, model, data.test_x, data.test_y, device, comm_);
        beacon.Beat();
        if (!spec_.IsRegression()) eval_metrics[data.eval_name + "_accuracy"] = eval.accuracy;
        eval_metrics[data.eval_name + "_loss"] = eval.loss;
      }
      eval_metrics["epoch_time_s"] = epoch_time;  // training steps only
      const double eval_time = Seconds() - eval_start;
      epoch_start = Seconds();
      last_metrics.update(eval_metrics);
      if (leader) {
        std::string line;
        for (auto it = eval_metrics.begin(); it != eval_metrics.end(); ++it) {
          if (it.key() == "epoch_time_s") continue;
          char part[64];
          std::snprintf(part, sizeof part, " %s %.4f", it.key().c_str(), it->get<double>());
          line += part;
        }
        std::printf("[rank 0] epoch %lld done:%s (%.1f s, evaluation %.1f s)\n",
                    static_cast<long long>(epoch + 1), line.c_str(), epoch_time, eval_time);
        std::fflush(stdout);
        json report = eval_metrics;
        report["step"] = step;
        report["epoch"] = epoch + 1;
        reporter_.Progress(report);
      }
    }
    if (spec_.checkpoint.every_steps > 0 && step % spec_.checkpoint.every_steps == 0) {
      save(step / steps_per_epoch);
    }
    if (stop_after_this_step && step < total_steps) {
      stopped_ = true;
      break;
    }
  }
  if (saved_step != step) save(step / steps_per_epoch);
  if (stopped_) {
    // Nobody leaves before rank 0 has saved and reported: mpirun ends the whole job as soon as
    // one rank exits with a failure code.
    comm_.Barrier();
    if (leader) {
      stop_marked_ = reporter_.connected() && WriteStopMarker(options_.run_dir, step).ok();
      std::printf("[rank 0] stopped at step %lld on SIGTERM, checkpoint saved\n",
                  static_cast<long long>(step));
      std::fflush(stdout);
    }
    return Status::Ok();
  }

  if (!options_.dump_params.empty()) {
    std::vector<torch::Tensor> pieces;
    for (const auto& p : params) pieces.push_back(p.detach().reshape({-1}));
    torch::Tensor flat = torch::cat(pieces).to(torch::kCPU).contiguous();
    std::ofstream out(options_.dump_params + ".rank" + std::to_string(comm_.rank()),
                      std::ios::binary);
    out.write(static_cast<const char*>(flat.data_ptr()),
              static_cast<std::streamsize>(flat.numel() * sizeof(float)));
  }
  if (leader) {
    reporter_.Progress({{"done", true}});
    const int64_t steps_run = std::max<int64_t>(0, step - first_step - kWarmupSteps);
    std::printf("[rank 0] finished at step %lld: %lld steps after warm-up in %.3f s, "
                "%.1f samples/s\n",
                static_cast<long long>(step), static_cast<long long>(steps_run), step_time_s,
                static_cast<double>(steps_run * plan.GlobalBatch()) / std::max(1e-9, step_time_s));
    std::fflush(stdout);
  }
  return Status::Ok();
}

}  // namespace kiln::train
