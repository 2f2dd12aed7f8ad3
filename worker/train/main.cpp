// kiln-train: one rank of a kiln job, started by mpirun. Parses flags and the spec, then runs the
// Trainer. An error on any rank aborts the whole MPI job with a message naming the cause.
#include <dlfcn.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/rank_failure.h"
#include "worker/train/cpu_binding.h"
#include "worker/train/gpu_binding.h"
#include "worker/train/mpi_comm.h"
#include "worker/train/progress_reporter.h"
#include "worker/train/trainer.h"

namespace {

// Every rank parses the same arguments, so a usage error ends each one alike: no abort needed
// (and --help exits 0 without MPI's abort banner).
int ExitForParseError(CLI::App& app, const CLI::ParseError& e) { return app.exit(e) == 0 ? 0 : 2; }

// Tells the agent why this rank fails (the job's reason), then ends every rank of the job.
[[noreturn]] void FailRank(kiln::train::MpiComm& comm, const std::string& run_dir,
                           const std::string& error, bool permanent, int code) {
  std::fprintf(stderr, "[rank %d] error: %s\n", comm.rank(), error.c_str());
  std::fflush(stderr);
  if (!run_dir.empty()) {
    (void)kiln::WriteRankFailure(run_dir, {comm.rank(), error, permanent});
  }
  comm.Abort(code);
}

volatile std::sig_atomic_t g_stop_requested = 0;
void OnStopSignal(int) { g_stop_requested = 1; }

// When this node's ranks fill every core, a rank waiting in MPI must yield its core instead of
// spinning on it: the gradient sync engine's communication thread waits while backward still runs
// on the same core. Measured on 2 cores, 2 ranks, the CNN: 1136 -> 1482 samples/s
// (docs/benchmarks.md). MCA parameters are read at MPI_Init, so this runs before it; an explicit
// OMPI_MCA_mpi_yield_when_idle wins.
void YieldWhenCoresAreFull() {
  const char* local_ranks = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char* threads = std::getenv("KILN_THREADS_PER_RANK");
  if (local_ranks == nullptr) return;
  const long busy = std::atol(local_ranks) * std::max(1L, threads ? std::atol(threads) : 1L);
  if (busy >= static_cast<long>(std::thread::hardware_concurrency())) {
    ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  kiln::train::BindRankCpus();  // before any thread starts: they all inherit its CPUs
  YieldWhenCoresAreFull();
  const std::string gpus = kiln::train::BindRankGpus();  // before anything touches CUDA
  kiln::train::MpiComm comm(&argc, &argv);
  CLI::App app{"kiln-train: one data-parallel training rank (run under mpirun)"};
  std::string spec_path, report;
  kiln::train::TrainerOptions options;
  options.threads = 0;
  app.add_option("--spec", spec_path, "job spec (JSON)")->required();
  app.add_option("--run-dir", options.run_dir, "run directory (checkpoints go here)")->required();
  app.add_option("--checkpoint-dir", options.checkpoint_dir,
                 "where checkpoints are written (default: <run-dir>/checkpoints)");
  app.add_option("--report", report, "agent's ipc:// address for progress (rank 0)");
  app.add_option("--resume", options.resume_path, "checkpoint to resume from");
  app.add_option("--max-steps", options.max_steps, "stop after this many steps");
  app.add_option("--dump-params", options.dump_params,
                 "write final parameters to FILE.rank<r> (raw float32)");
  app.add_option("--threads", options.threads, "intra-op threads (default: spec or agent)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ExitForParseError(app, e);
  }

  // On the other nodes of a multi-node gang, mpirun's command line names the leader's run dir;
  // each node's agent exports its own as KILN_RUN_DIR, and paths inside the former move to it.
  if (const char* here = std::getenv("KILN_RUN_DIR");
      here != nullptr && *here != '\0' && options.run_dir != here) {
    const std::string from = options.run_dir;
    auto rebase = [&](std::string& path) {
      if (!from.empty() && path.rfind(from, 0) == 0) path = here + path.substr(from.size());
    };
    rebase(spec_path);
    rebase(options.checkpoint_dir);
    rebase(options.resume_path);
    options.run_dir = here;
  }
  auto text = kiln::ReadFile(spec_path);
  if (!text.ok()) {
    FailRank(comm, options.run_dir, "--spec: " + text.status().message(),
             kiln::IsPermanentFailure(text.status().code()), 2);
  }
  kiln::SpecParseResult parsed = kiln::ParseJobSpecText(*text);
  if (!parsed.ok()) {
    for (size_t i = 1; i < parsed.errors.size(); ++i) {
      std::fprintf(stderr, "[rank %d] spec: %s\n", comm.rank(), parsed.errors[i].ToString().c_str());
    }
    FailRank(comm, options.run_dir, "spec: " + parsed.errors[0].ToString(), true, 2);
  }
  if (options.threads <= 0) {
    const char* env = std::getenv("KILN_THREADS_PER_RANK");
    options.threads = env ? std::atoi(env) : parsed.spec.resources.threads_per_rank;  // 0 by hand: 1
    if (options.threads <= 0) options.threads = 1;
  }

  if (!gpus.empty()) {
    std::fprintf(stderr, "[rank %d] CUDA_VISIBLE_DEVICES=%s\n", comm.rank(), gpus.c_str());
  }

  // BLAS threads follow the rank's thread count even when kiln-train is started by hand, without
  // the OPENBLAS_NUM_THREADS the agent sets (OpenBLAS reads the variable only when it loads).
  using SetThreadsFn = void (*)(int);
  if (auto set_blas_threads =
          reinterpret_cast<SetThreadsFn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas_threads(options.threads);
  }

  // SIGTERM (cancel, time limit, drain) lets the gang finish its step and save a checkpoint.
  options.stop_requested = &g_stop_requested;
  std::signal(SIGTERM, OnStopSignal);
  kiln::Status status;
  bool stopped = false, stop_marked = false;
  {
    kiln::train::ProgressReporter reporter(comm.rank() == 0 ? report : "");
    try {
      kiln::train::Trainer trainer(parsed.spec, options, comm, reporter);
      status = trainer.Run();
      stopped = trainer.stopped();
      stop_marked = trainer.stop_marked();
      // Every rank has saved and passed the stop barrier: a SIGTERM from here on ends the rank.
      if (stopped) std::signal(SIGTERM, SIG_DFL);
    } catch (const c10::Error& e) {
      status = kiln::Status::Internal(std::string("LibTorch: ") + e.what_without_backtrace());
    } catch (const std::exception& e) {
      status = kiln::Status::Internal(e.what());
    }
  }
  if (!status.ok()) {
    FailRank(comm, options.run_dir, status.message(), kiln::IsPermanentFailure(status.code()), 1);
  }
  // Stopped early is not a finished run. Under an agent (which reads rank 0's stop marker) every
  // rank exits 0, so that mpirun ends at once instead of aborting the job (common/rank_failure.h).
  // Rank 0 says the stop is not a finish with its code when it could not write the marker.
  if (stopped && (report.empty() || (comm.rank() == 0 && !stop_marked))) {
    return kiln::kStoppedExitCode;
  }
  return 0;
}
