#include "worker/agent/job_run.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/rank_failure.h"
#include "common/step_beacon.h"
#include "worker/agent/node_resources.h"

namespace kiln::agent {

namespace {

constexpr Millis kFetchRetryMs = 5000;  // a checkpoint read without an answer is sent again
// A member gives up on a leader that never asks for its daemon (kiln-rsh itself gives up after
// 30 s; the scheduler normally stops the member long before).
constexpr Millis kMemberWaitMs = 120000;

}  // namespace

Result<std::unique_ptr<JobRun>> JobRun::Start(const JobRunConfig& config,
                                              const protocol::LaunchJob& launch,
                                              transport::Context& context, Sink sink,
                                              LineSink lines, CheckpointSink on_checkpoint,
                                              Millis now, std::vector<int> cpu_ids,
                                              std::optional<RunAs> as) {
  const std::string run_dir = config.work_dir + "/jobs/" + std::to_string(launch.job_id) +
                              "/attempt-" + std::to_string(launch.attempt);
  if (as) {
    // A run dir left by an earlier scheduler's job of the same id may hold a job's links: the
    // agent writes only into a fresh one, then gives it to the account.
    std::error_code removed;
    std::filesystem::remove_all(run_dir, removed);  // never follows a link
    if (removed) return Status::IoError("cannot clear " + run_dir + ": " + removed.message());
  }
  KILN_RETURN_IF_ERROR(MakeDirs(run_dir + "/checkpoints"));
  ClearRankReports(run_dir);  // a run dir left by an earlier scheduler's job of the same id
  std::error_code ignored;
  std::filesystem::remove_all(StepBeaconDir(run_dir), ignored);  // never follows a link
  KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/spec.json", launch.spec.dump(2) + "\n"));
  KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/hostfile",
                                       "localhost slots=" + std::to_string(launch.ranks) + "\n"));
  // Rank 0's reports are CURVE-encrypted too, to a keypair made for this attempt; its public key
  // reaches kiln-train through the environment (KILN_REPORT_KEY).
  auto report_keys = transport::NewCurveKeyPair();
  if (!report_keys.ok()) return report_keys.status();
  auto reports = std::make_unique<transport::Socket>(context, transport::SocketKind::kPull);
  KILN_RETURN_IF_ERROR(reports->MakeCurveServer(*report_keys));
  auto bound = reports->Bind("ipc://" + run_dir + "/agent.sock");
  if (!bound.ok()) return bound.status();
  std::unique_ptr<JobRun> run(new JobRun(config, launch, run_dir, std::move(reports),
                                         std::move(sink), std::move(lines),
                                         std::move(on_checkpoint)));
  run->report_key_ = report_keys->public_key;
  run->cpu_ids_ = std::move(cpu_ids);
  run->as_ = std::move(as);
  if (config.cgroup != nullptr) {
    const int64_t per_rank = run->spec_.resources.memory_per_rank;
    auto made = config.cgroup->CreateAttempt(
        "job-" + std::to_string(launch.job_id) + "-attempt-" + std::to_string(launch.attempt),
        per_rank > 0 ? per_rank * launch.ranks : 0);
    if (!made.ok()) return made.status();
    run->cgroup_dir_ = *made;
  }
  if (run->memory_sampler_) {  // only the account's processes count (owner())
    run->memory_sampler_.emplace(run->tag_, run->ProgramName(), run->owner());
  }
  if (run->spec_.serve) {
    KILN_RETURN_IF_ERROR(
        run->SetServeTokens(launch.serve_tokens.value_or(std::vector<std::string>{})));
  }
  if (run->leader_) {
    // Where kiln-rsh (run by mpirun) finds the other nodes' agents, and the secret they want.
    nlohmann::json hosts = nlohmann::json::object();
    std::string hostfile;
    for (const auto& h : launch.hosts) {
      hosts[h.address] = {{"node", h.node}, {"endpoint", h.launch_endpoint},
                          {"public_key", h.public_key}};
      hostfile += h.address + " slots=" + std::to_string(h.ranks) + "\n";
    }
    nlohmann::json file = {{"job_id", launch.job_id}, {"attempt", launch.attempt},
                           {"secret", launch.launch_secret}, {"hosts", hosts}};
    KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/launch.json", file.dump(2) + "\n", 0600));
    KILN_RETURN_IF_ERROR(WriteFileAtomic(run_dir + "/hostfile", hostfile));
  }
  if (!run->as_ || !run->shared_fs_) {
    KILN_RETURN_IF_ERROR(MakeDirs(run->checkpoint_dir_));
  }  // else the ranks make it, with the account's rights there
  if (run->as_) KILN_RETURN_IF_ERROR(GiveTree(run_dir, *run->as_));
  if (launch.resume_step >= 0 && launch.resume_path.empty()) {
    run->fetching_ = true;
    run->RequestNextChunk(now);
    spdlog::info("job {} attempt {}: fetching checkpoint {} of job {} to resume from",
                 launch.job_id, launch.attempt, launch.resume_step, launch.resume_job);
  } else if (run->member_) {
    run->waiting_since_ = now;
    spdlog::info("job {} attempt {}: {} ranks here, waiting for the leader {} to start them",
                 launch.job_id, launch.attempt, launch.ranks, launch.hosts.front().node);
  } else {
    KILN_RETURN_IF_ERROR(run->StartProcess());
  }
  return run;
}

JobRun::JobRun(const JobRunConfig& config, const protocol::LaunchJob& launch, std::string run_dir,
               std::unique_ptr<transport::Socket> reports, Sink sink, LineSink lines,
               CheckpointSink on_checkpoint)
    : config_(config),
      launch_(launch),
      spec_(ParseJobSpec(launch.spec).spec),
      job_id_(launch.job_id),
      attempt_(launch.attempt),
      run_dir_(std::move(run_dir)),
      reports_(std::move(reports)),
      sink_(std::move(sink)),
      lines_(std::move(lines)),
      on_checkpoint_(std::move(on_checkpoint)),
      output_log_(run_dir_ + "/output.log", std::ios::app),
      stall_watch_(spec_.train.stall_timeout_s
                       ? std::optional<Millis>(
                             static_cast<Millis>(*spec_.train.stall_timeout_s * 1000))
                       : std::nullopt,
                   /*whole_gang_here=*/launch.hosts.size() <= 1) {
  const CheckpointSpec& checkpoint = spec_.checkpoint;
  shared_fs_ = checkpoint.storage == "shared_fs" && !checkpoint.storage_path.empty();
  checkpoint_dir_ = shared_fs_ ? checkpoint.storage_path + "/job-" + std::to_string(job_id_)
                               : run_dir_ + "/checkpoints";
  tag_ = RunTag(config_.node_name, job_id_, attempt_);
  memory_sampler_.emplace(tag_, ProgramName());
  if (launch_.hosts.size() > 1) {
    leader_ = launch_.hosts.front().node == config_.node_name;
    member_ = !leader_;
  }
}

JobRun::~JobRun() {
  if (spec_.serve) {
    std::error_code ignored;
    std::filesystem::remove(ServeTokensPath(), ignored);
  }
  if (group_ && !group_->TryReap()) group_->SignalGroup(SIGKILL);
  KillTagged(ExactTag(tag_), SIGKILL);  // a member's detached daemon and ranks too
  // Everything in the attempt's cgroup, even a process that shed its tag and session; the
  // folder goes once they are gone (DelegatedCgroup::SweepLeftovers).
  if (!cgroup_dir_.empty()) config_.cgroup->Retire(cgroup_dir_);
}

std::vector<std::pair<std::string, std::string>> JobRun::RankEnvironment() const {
  // Threads per rank: the spec's, or this node's cores shared by its ranks (no oversubscription).
  int per_rank = spec_.resources.threads_per_rank;
  const int64_t cpus_per_rank = std::max<int64_t>(1, spec_.resources.cpus_per_rank);
  if (per_rank <= 0 && !cpu_ids_.empty()) per_rank = static_cast<int>(cpus_per_rank);
  if (per_rank <= 0) {
    per_rank = static_cast<int>(std::max<int64_t>(1, DetectCpuCount() / std::max<int64_t>(1, launch_.ranks)));
  }
  const std::string threads = std::to_string(per_rank);
  std::vector<std::pair<std::string, std::string>> env = {
      {"OMP_NUM_THREADS", threads},        {"OPENBLAS_NUM_THREADS", threads},
      {"MKL_NUM_THREADS", threads},        {"KILN_THREADS_PER_RANK", threads},
      {"KILN_JOB_ID", std::to_string(job_id_)},
      {"KILN_ATTEMPT", std::to_string(attempt_)},
      {"KILN_REPORT_KEY", report_key_},
      {"KILN_NODE", config_.node_name},
      // kiln-train moves paths under the leader's run dir (on mpirun's command line) here.
      {"KILN_RUN_DIR", run_dir_},
      {"OMPI_MCA_btl_base_warn_component_unused", "0"},
      // On SIGTERM mpirun passes it to the ranks and kills them after this many seconds: give
      // them the agent's grace period to save a checkpoint (the agent SIGKILLs after it anyway).
      {"OMPI_MCA_odls_base_sigkill_timeout",
       std::to_string(std::max<int64_t>(1, (config_.kill_grace_ms + 999) / 1000))}};
  if (launch_.array_job && launch_.array_index) {
    env.push_back({"KILN_ARRAY_JOB_ID", std::to_string(*launch_.array_job)});
    env.push_back({"KILN_ARRAY_INDEX", std::to_string(*launch_.array_index)});
  }
  if (!launch_.gpu_ids.empty()) {
    // Every GPU of this node's share; kiln-train narrows it to its own rank's ids.
    std::string ids;
    for (int64_t g : launch_.gpu_ids) ids += (ids.empty() ? "" : ",") + std::to_string(g);
    // Numbered as nvidia-smi and NVML (the agent's metrics) number them, not fastest first.
    env.push_back({"CUDA_DEVICE_ORDER", "PCI_BUS_ID"});
    env.push_back({"CUDA_VISIBLE_DEVICES", ids});
    env.push_back({"KILN_GPU_IDS", ids});
    env.push_back({"KILN_GPUS_PER_RANK", std::to_string(spec_.resources.gpus_per_rank)});
  }
  if (!cpu_ids_.empty()) {
    // Each rank binds itself to its slice before it starts a thread (worker/train/cpu_binding.h).
    std::string ids;
    for (int c : cpu_ids_) ids += (ids.empty() ? "" : ",") + std::to_string(c);
    env.push_back({"KILN_CPU_IDS", ids});
    env.push_back({"KILN_CPUS_PER_RANK", std::to_string(cpus_per_rank)});
  }
  if ((as_ ? as_->uid : ::geteuid()) == 0) {
    env.push_back({"OMPI_ALLOW_RUN_AS_ROOT", "1"});
    env.push_back({"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"});
  }
  return env;
}

Status JobRun::StartProcess() {
  if (spec_.serve) return StartServer();
  int64_t total_ranks = launch_.ranks;
  if (leader_) {
    total_ranks = 0;
    for (const auto& h : launch_.hosts) total_ranks += h.ranks;
  }
  std::vector<std::string> argv = {
      config_.mpirun_path, "-np", std::to_string(total_ranks), "--hostfile", run_dir_ + "/hostfile",
      "--bind-to", "none",
      // Shared memory between local ranks, TCP between nodes; no single-copy mechanism, which
      // needs ptrace rights that containers often withhold.
      "--mca", "btl", "self,vader,tcp", "--mca", "btl_vader_single_copy_mechanism", "none"};
  auto env = RankEnvironment();
  if (leader_) {
    // The other nodes' MPI daemons are started by their kiln agents, through kiln-rsh, not ssh;
    // all of them from here (no tree spawn: kiln-rsh needs this node's launch.json).
    for (const char* arg : {"--mca", "plm_rsh_agent"}) argv.push_back(arg);
    argv.push_back(config_.rsh_path);
    for (const char* arg : {"--mca", "plm_rsh_no_tree_spawn", "1"}) argv.push_back(arg);
    env.push_back({"KILN_LAUNCH_FILE", run_dir_ + "/launch.json"});
  }
  for (const std::string& a : {config_.trainer_path, std::string("--spec"), run_dir_ + "/spec.json",
                               std::string("--run-dir"), run_dir_, std::string("--checkpoint-dir"),
                               checkpoint_dir_, std::string("--report"),
                               "ipc://" + run_dir_ + "/agent.sock"}) {
    argv.push_back(a);
  }
  if (launch_.resume_step >= 0) {
    argv.push_back("--resume");
    argv.push_back(launch_.resume_path.empty() ? run_dir_ + "/resume.ckpt" : launch_.resume_path);
  }
  auto group = StartGroup(argv, env);
  if (!group.ok()) return group.status();
  group_ = std::move(group).value();
  sink_(protocol::Encode(protocol::JobStarted{job_id_, attempt_, group_->pid()}));
  spdlog::info("job {} attempt {}: started mpirun (pid {}) with {} ranks in {}", job_id_, attempt_,
               group_->pid(), total_ranks, run_dir_);
  return Status::Ok();
}

Result<ProcessGroup> JobRun::StartGroup(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& env) {
  int procs = -1;
  if (!cgroup_dir_.empty()) {
    const std::string path = cgroup_dir_ + "/cgroup.procs";
    procs = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (procs < 0) {
      return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
    }
  }
  auto group = ProcessGroup::Start(argv, env, run_dir_, tag_, as_ ? &*as_ : nullptr, procs);
  if (procs >= 0) ::close(procs);
  return group;
}

Status JobRun::StartRemote(const std::string& command, const std::string& requester) {
  if (!ReadyForRemote()) return Status::FailedPrecondition("not ready for a remote command");
  auto group = StartGroup({"/bin/sh", "-c", command}, RankEnvironment());
  if (!group.ok()) return group.status();
  group_ = std::move(group).value();
  remote_requester_ = requester;
  sink_(protocol::Encode(protocol::JobStarted{job_id_, attempt_, group_->pid()}));
  Note("started the MPI daemon for " + std::to_string(launch_.ranks) + " ranks of the leader " +
       launch_.hosts.front().node);
  return Status::Ok();
}

std::optional<std::pair<std::string, protocol::RemoteExit>> JobRun::TakeRemoteExit() {
  if (!remote_exit_code_ || remote_exit_taken_) return std::nullopt;
  remote_exit_taken_ = true;
  return std::make_pair(remote_requester_,
                        protocol::RemoteExit{*remote_exit_code_, remote_output_});
}

void JobRun::AddTo(transport::Poller& poller) {
  if (group_ && !remote_exit_code_) poller.AddFd(group_->output_fd());
  poller.AddSocket(*reports_);
}

void JobRun::Note(const std::string& line) {
  spdlog::warn("job {} attempt {}: {}", job_id_, attempt_, line);
  output_log_ << "[kiln-worker] " << line << '\n';
  output_log_.flush();
  lines_(job_id_, attempt_, {"[kiln-worker] " + line});
}

void JobRun::ForwardOutput(bool* eof) {
  std::vector<std::string> lines = group_->ReadLines(eof);
  if (lines.empty()) return;
  for (const auto& l : lines) output_log_ << l << '\n';
  output_log_.flush();
  lines_(job_id_, attempt_, std::move(lines));
}

JobRun::Stats JobRun::CurrentStats(Millis now) {
  Stats stats;
  stats.samples_per_s = samples_per_s_;
  stats.slots_here = launch_.ranks;
  if (!memory_sampler_) return stats;
  for (const RankMemory& rank : memory_sampler_->Sample(now)) {
    stats.rss_bytes += rank.rss_bytes;
    ++stats.ranks;
  }
  return stats;
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
      if (p.ok() && p->report.is_object() && p->report.contains("samples_per_s") &&
          p->report["samples_per_s"].is_number()) {
        samples_per_s_ = p->report["samples_per_s"].get<double>();
      }
      if (p.ok()) sink_(protocol::Encode(protocol::ProgressReport{job_id_, attempt_, p->report}));
    } else if (envelope->type == protocol::TrainCheckpoint::kType) {
      auto c = protocol::DecodeBody<protocol::TrainCheckpoint>(*envelope);
      if (c.ok()) ForwardCheckpoint(*c);
    }
  }
}

std::optional<protocol::JobExited> JobRun::PumpMember(Millis now) {
  if (!group_) {  // no daemon asked for yet
    if (kill_deadline_) {
      return protocol::JobExited{job_id_, attempt_, -1, SIGTERM, kill_reason_, {}, {}, {}};
    }
    if (fetching_ && now - fetch_sent_at_ > kFetchRetryMs) RequestNextChunk(now);
    if (!fetching_ && now - waiting_since_ > kMemberWaitMs) {
      return protocol::JobExited{job_id_, attempt_, 125, 0,
                                 "the leader " + launch_.hosts.front().node +
                                     " never asked this node for its MPI daemon", {}, {}, {}};
    }
    return std::nullopt;
  }
  if (!remote_exit_code_) {
    bool eof = false;
    std::vector<std::string> lines = group_->ReadLines(&eof);
    for (auto& l : lines) {
      output_log_ << l << '\n';
      remote_output_.push_back(std::move(l));
      if (remote_output_.size() > 20) remote_output_.erase(remote_output_.begin());
    }
    output_log_.flush();
    auto exit = group_->TryReap();
    if (!exit) return std::nullopt;
    remote_exit_code_ = exit->signal != 0 ? 128 + exit->signal : exit->exit_code;
    if (*remote_exit_code_ != 0) {
      KillTagged(ExactTag(tag_), SIGKILL);
      return protocol::JobExited{job_id_, attempt_, *remote_exit_code_, 0,
                                 "the MPI daemon for the leader " + launch_.hosts.front().node +
                                     " failed to start", {}, {}, {}};
    }
  }
  WatchForStalls(now);
  WatchMemory(now);
  if (kill_deadline_ && now >= *kill_deadline_ && !killed_hard_) {
    KillTagged(ExactTag(tag_), SIGKILL);
    killed_hard_ = true;
  }
  // The daemon detached: the attempt lives here while any of its processes does.
  if (now < next_liveness_check_) return std::nullopt;
  next_liveness_check_ = now + 250;
  if (!FindTagged(ExactTag(tag_), owner()).empty()) return std::nullopt;
  spdlog::info("job {} attempt {}: the MPI daemon and its ranks are gone", job_id_, attempt_);
  protocol::JobExited exited{job_id_, attempt_, 0, 0, kill_reason_, {}, {}, {}};
  if (ReadFirstRankFailure(run_dir_)) exited.exit_code = 1;  // a rank here failed
  return WithRankFailure(exited);
}

std::optional<protocol::JobExited> JobRun::Pump(Millis now) {
  if (failure_) return protocol::JobExited{job_id_, attempt_, 126, 0, *failure_, {}, {}, {}};
  if (member_) return PumpMember(now);
  if (!group_) {
    if (kill_deadline_) {
      return protocol::JobExited{job_id_, attempt_, -1, SIGTERM, kill_reason_, {}, {}, {}};
    }
    if (fetching_ && now - fetch_sent_at_ > kFetchRetryMs) RequestNextChunk(now);  // lost
    return std::nullopt;
  }
  bool eof = false;
  ForwardOutput(&eof);
  ForwardReports();
  WatchForStalls(now);
  WatchMemory(now);
  if (kill_deadline_ && now >= *kill_deadline_ && !killed_hard_) {
    Note("still running " + std::to_string(config_.kill_grace_ms) + " ms after SIGTERM; SIGKILL");
    group_->SignalGroup(SIGKILL);
    KillTagged(ExactTag(tag_), SIGKILL);
    killed_hard_ = true;
  }
  auto exit = group_->TryReap();
  if (!exit) return std::nullopt;
  // The leader is gone: no rank of this attempt may outlive it.
  group_->SignalGroup(SIGKILL);
  KillTagged(ExactTag(tag_), SIGKILL);
  // The rest of the output and reports were written before the exit; forward them first so the
  // last checkpoint is queued for upload before the exit is reported.
  for (int i = 0; i < 100 && !eof; ++i) ForwardOutput(&eof);
  ForwardReports();
  spdlog::info("job {} attempt {}: mpirun exited (code {}, signal {})", job_id_, attempt_,
               exit->exit_code, exit->signal);
  if (exit->exit_code == 0 && exit->signal == 0) {
    if (auto step = ReadStopMarker(run_dir_)) {  // stopped early on SIGTERM: not finished
      Note("stopped on SIGTERM at step " + std::to_string(*step) + ", checkpoint saved");
      return protocol::JobExited{job_id_, attempt_, kStoppedExitCode, 0,
                                 "stopped on SIGTERM at step " + std::to_string(*step) +
                                     ", checkpoint saved",
                                 {}, {}, {}};
    }
  }
  return WithRankFailure(protocol::JobExited{job_id_, attempt_, exit->exit_code, exit->signal,
                                             kill_reason_, {}, {}, {}});
}

protocol::JobExited JobRun::WithRankFailure(protocol::JobExited exited) const {
  if (watchdog_reason_) {  // killed for it: that is the reason
    if (exited.exit_code == 0 && exited.signal == 0) exited.exit_code = 1;
    exited.rank_error = *watchdog_reason_;
    exited.permanent = watchdog_permanent_;
    return exited;
  }
  if (!cgroup_dir_.empty() && OomKillsOf(cgroup_dir_) > 0) {
    if (exited.exit_code == 0 && exited.signal == 0) exited.exit_code = 1;
    exited.rank_error =
        CgroupOomReason(launch_.ranks, spec_.resources.memory_per_rank, job_id_, config_.node_name);
    exited.permanent = true;  // as the watchdog's OutOfMemory: the same job needs the same memory
    return exited;
  }
  if (exited.exit_code == 0 && exited.signal == 0) return exited;
  if (auto failure = ReadFirstRankFailure(run_dir_)) {
    exited.rank_error = "rank " + std::to_string(failure->rank) + " on " + config_.node_name +
                        ": " + failure->error;
    exited.permanent = failure->permanent && kill_reason_.empty();
  }
  return exited;
}

void JobRun::Kill(const std::string& reason, Millis now) {
  if (kill_deadline_) return;
  kill_reason_ = "killed: " + reason;
  kill_deadline_ = now + config_.kill_grace_ms;
  fetching_ = false;
  spdlog::info("job {} attempt {}: stopping ({})", job_id_, attempt_, reason);
  if (!group_ && !member_) return;
  // SIGTERM goes to the ranks, not to mpirun: mpirun answers SIGTERM by killing the ranks, which
  // would cut short the checkpoint they save on SIGTERM. Once the ranks exit, mpirun does too.
  // Before any rank exists (mpirun still starting them), the whole group gets it.
  const std::string trainer = ProgramName();
  int ranks = 0;
  for (pid_t pid : FindTagged(ExactTag(tag_), owner())) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == trainer.substr(0, 15) && ::kill(pid, SIGTERM) == 0) ++ranks;
  }
  if (ranks == 0 && group_ && !remote_exit_code_) group_->SignalGroup(SIGTERM);
  if (ranks == 0 && member_) KillTagged(ExactTag(tag_), SIGTERM);  // the detached daemon
}

}  // namespace kiln::agent
