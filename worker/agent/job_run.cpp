#include "worker/agent/job_run.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/file_util.h"

namespace kiln::agent {

namespace {

constexpr size_t kMaxLinesPerBatch = 500;
constexpr size_t kMaxBatchBytes = 1 << 20;  // well under the 4 MiB envelope limit
// Checkpoints travel in one frame today (the checkpoint issue chunks them); the ZeroMQ limit is
// 256 MiB, so larger ones are refused here with a message instead of being dropped by ZeroMQ.
constexpr int64_t kMaxCheckpointBytes = 200 << 20;

int KeepLast(const nlohmann::json& spec) {
  if (spec.contains("checkpoint") && spec["checkpoint"].is_object() &&
      spec["checkpoint"].contains("keep_last") &&
      spec["checkpoint"]["keep_last"].is_number_integer()) {
    return std::max(1, spec["checkpoint"]["keep_last"].get<int>());
  }
  return 3;
}

int ThreadsPerRank(const nlohmann::json& spec) {
  if (spec.contains("resources") && spec["resources"].is_object() &&
      spec["resources"].contains("threads_per_rank") &&
      spec["resources"]["threads_per_rank"].is_number_integer()) {
    return std::max(1, spec["resources"]["threads_per_rank"].get<int>());
  }
  return 1;
}

}  // namespace

Result<std::unique_ptr<JobRun>> JobRun::Start(const JobRunConfig& config,
                                              const protocol::LaunchJob& launch,
                                              const std::string* resume_bytes,
                                              transport::Context& context, Sink sink) {
  const std::string run_dir = config.work_dir + "/jobs/" + std::to_string(launch.job_id) +
                              "/attempt-" + std::to_string(launch.attempt);
  KILN_RETURN_IF_ERROR(MakeDirs(run_dir + "/checkpoints"));
  KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/spec.json", launch.spec.dump(2) + "\n"));
  KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/hostfile",
                                       "localhost slots=" + std::to_string(launch.ranks) + "\n"));
  const std::string report_address = "ipc://" + run_dir + "/agent.sock";
  auto reports = std::make_unique<transport::Socket>(context, transport::SocketKind::kPull);
  auto bound = reports->Bind(report_address);
  if (!bound.ok()) return bound.status();

  std::vector<std::string> argv = {
      config.mpirun_path, "-np", std::to_string(launch.ranks), "--hostfile", run_dir + "/hostfile",
      "--bind-to", "none",
      // Shared memory between local ranks, TCP between nodes; no single-copy mechanism, which
      // needs ptrace rights that containers often withhold.
      "--mca", "btl", "self,vader,tcp", "--mca", "btl_vader_single_copy_mechanism", "none",
      config.trainer_path, "--spec", run_dir + "/spec.json", "--run-dir", run_dir, "--report",
      report_address};
  if (resume_bytes != nullptr && launch.resume_step >= 0) {
    KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/resume.ckpt", *resume_bytes));
    argv.push_back("--resume");
    argv.push_back(run_dir + "/resume.ckpt");
  }
  const std::string threads = std::to_string(ThreadsPerRank(launch.spec));
  std::vector<std::pair<std::string, std::string>> env = {
      {"OMP_NUM_THREADS", threads},        {"OPENBLAS_NUM_THREADS", threads},
      {"MKL_NUM_THREADS", threads},        {"KILN_THREADS_PER_RANK", threads},
      {"KILN_JOB_ID", std::to_string(launch.job_id)},
      {"KILN_ATTEMPT", std::to_string(launch.attempt)},
      {"OMPI_MCA_btl_base_warn_component_unused", "0"}};
  if (::geteuid() == 0) {
    env.push_back({"OMPI_ALLOW_RUN_AS_ROOT", "1"});
    env.push_back({"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"});
  }
  const std::string tag = RunTag(config.node_name, launch.job_id, launch.attempt);
  auto group = ProcessGroup::Start(argv, env, run_dir, tag);
  if (!group.ok()) return group.status();
  std::unique_ptr<JobRun> run(new JobRun(config, launch, run_dir, std::move(group).value(),
                                         std::move(reports), std::move(sink)));
  run->sink_(protocol::Encode(protocol::JobStarted{launch.job_id, launch.attempt,
                                                   run->group_.pid()}));
  spdlog::info("job {} attempt {}: started mpirun (pid {}) with {} ranks in {}", launch.job_id,
               launch.attempt, run->group_.pid(), launch.ranks, run_dir);
  return run;
}

JobRun::JobRun(const JobRunConfig& config, const protocol::LaunchJob& launch, std::string run_dir,
               ProcessGroup group, std::unique_ptr<transport::Socket> reports, Sink sink)
    : config_(config),
      job_id_(launch.job_id),
      attempt_(launch.attempt),
      run_dir_(std::move(run_dir)),
      group_(std::move(group)),
      reports_(std::move(reports)),
      sink_(std::move(sink)),
      output_log_(run_dir_ + "/output.log", std::ios::app),
      keep_last_(KeepLast(launch.spec)) {}

JobRun::~JobRun() {
  if (!group_.TryReap()) {
    group_.SignalGroup(SIGKILL);
    KillTagged(ExactTag(group_.tag()), SIGKILL);
  }
}

void JobRun::AddTo(transport::Poller& poller) {
  poller.AddFd(group_.output_fd());
  poller.AddSocket(*reports_);
}

void JobRun::ForwardOutput(bool* eof) {
  std::vector<std::string> lines = group_.ReadLines(eof);
  if (lines.empty()) return;
  for (const auto& l : lines) output_log_ << l << '\n';
  output_log_.flush();
  protocol::LogBatch batch{job_id_, attempt_, {}};
  size_t bytes = 0;
  for (auto& line : lines) {
    if (!batch.lines.empty() &&
        (batch.lines.size() >= kMaxLinesPerBatch || bytes + line.size() > kMaxBatchBytes)) {
      sink_(protocol::Encode(batch));
      batch.lines.clear();
      bytes = 0;
    }
    bytes += line.size();
    batch.lines.push_back(std::move(line));
  }
  if (!batch.lines.empty()) sink_(protocol::Encode(batch));
}

void JobRun::ForwardReports() {
  while (auto frames = reports_->Receive()) {
    if (frames->empty()) continue;
    auto envelope = protocol::DecodeEnvelope((*frames)[0]);
    if (!envelope.ok()) {
      spdlog::warn("job {}: bad report from trainer: {}", job_id_, envelope.status().message());
      continue;
    }
    if (envelope->type == protocol::TrainProgress::kType) {
      auto p = protocol::DecodeBody<protocol::TrainProgress>(*envelope);
      if (p.ok()) sink_(protocol::Encode(protocol::ProgressReport{job_id_, attempt_, p->report}));
    } else if (envelope->type == protocol::TrainCheckpoint::kType) {
      auto c = protocol::DecodeBody<protocol::TrainCheckpoint>(*envelope);
      if (c.ok()) ForwardCheckpoint(*c);
    }
  }
}

void JobRun::Note(const std::string& line) {
  spdlog::warn("job {} attempt {}: {}", job_id_, attempt_, line);
  output_log_ << "[kiln-worker] " << line << '\n';
  sink_(protocol::Encode(protocol::LogBatch{job_id_, attempt_, {"[kiln-worker] " + line}}));
}

void JobRun::ForwardCheckpoint(const protocol::TrainCheckpoint& c) {
  // The path comes from a child process: it must resolve to a regular file inside this attempt's
  // checkpoints folder, and be small enough to send (never a FIFO or /dev/zero).
  std::error_code ec;
  const auto dir = std::filesystem::weakly_canonical(run_dir_ + "/checkpoints", ec);
  const auto path = std::filesystem::weakly_canonical(c.path, ec);
  if (ec || path.parent_path() != dir) {
    return Note("ignoring a checkpoint report outside the run dir: " + c.path);
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Note("checkpoint at step " + std::to_string(c.step) + " is not a readable file");
  }
  if (st.st_size > kMaxCheckpointBytes) {
    return Note("checkpoint at step " + std::to_string(c.step) + " is " +
                std::to_string(st.st_size) + " bytes, over the upload limit of " +
                std::to_string(kMaxCheckpointBytes) + "; kept on this node only");
  }
  auto bytes = ReadFile(path.string());
  if (!bytes.ok()) {
    return Note("checkpoint at step " + std::to_string(c.step) + " unreadable: " +
                bytes.status().message());
  }
  const std::string sha = Sha256Hex(*bytes);
  if (sha != c.sha256) {
    return Note("checkpoint at step " + std::to_string(c.step) +
                " does not match its reported hash; not uploaded");
  }
  protocol::CheckpointReport report{job_id_, attempt_, c.step, c.epoch, c.metrics,
                                    static_cast<int64_t>(bytes->size()), sha};
  sink_(protocol::Encode(report, "", {std::move(bytes).value()}));
  RemoveOldCheckpoints();
}

// The agent, not the trainer, rotates the run dir's checkpoints: a file is deleted only after it
// was uploaded, so the trainer cannot delete one the agent has yet to read.
void JobRun::RemoveOldCheckpoints() {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir_ + "/checkpoints", ec)) {
    if (entry.path().extension() == ".pt") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());  // step numbers are zero-padded
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < files.size(); ++i) {
    std::filesystem::remove(files[i], ec);
  }
}

std::optional<protocol::JobExited> JobRun::Pump(Millis now) {
  bool eof = false;
  ForwardOutput(&eof);
  ForwardReports();
  if (kill_deadline_ && now >= *kill_deadline_ && !killed_hard_) {
    spdlog::warn("job {} attempt {}: still running {} ms after SIGTERM, sending SIGKILL", job_id_,
                 attempt_, config_.kill_grace_ms);
    group_.SignalGroup(SIGKILL);
    KillTagged(ExactTag(group_.tag()), SIGKILL);
    killed_hard_ = true;
  }
  auto exit = group_.TryReap();
  if (!exit) return std::nullopt;
  // The leader is gone: no rank of this attempt may outlive it.
  group_.SignalGroup(SIGKILL);
  KillTagged(ExactTag(group_.tag()), SIGKILL);
  // The rest of the output and reports were written before the exit; forward them first so the
  // last checkpoint is recorded before the exit is.
  for (int i = 0; i < 100 && !eof; ++i) ForwardOutput(&eof);
  ForwardReports();
  protocol::JobExited exited{job_id_, attempt_, exit->exit_code, exit->signal, kill_reason_};
  spdlog::info("job {} attempt {}: mpirun exited (code {}, signal {})", job_id_, attempt_,
               exit->exit_code, exit->signal);
  return exited;
}

void JobRun::Kill(const std::string& reason, Millis now) {
  if (kill_deadline_) return;
  kill_reason_ = "killed: " + reason;
  kill_deadline_ = now + config_.kill_grace_ms;
  spdlog::info("job {} attempt {}: stopping ({})", job_id_, attempt_, reason);
  group_.SignalGroup(SIGTERM);
}

}  // namespace kiln::agent
