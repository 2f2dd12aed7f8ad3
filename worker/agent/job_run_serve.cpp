// JobRun for a service's replica (spec.serve, docs/serving.md): kiln-serve in place of mpirun,
// with the checkpoint fetched as for a resume, and the file of tokens that may call it, which the
// agent keeps in a folder of its own and rewrites when the scheduler sends new ones.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "common/file_util.h"
#include "worker/agent/job_run.h"
#include "worker/serve/access_tokens.h"

namespace kiln::agent {

std::string JobRun::ProgramName() const {
  return std::filesystem::path(spec_.serve ? config_.serve_path : config_.trainer_path)
      .filename()
      .string();
}

std::string JobRun::ServeTokensPath() const {
  // Not in the run dir, which the job's account owns (a link it planted there would be followed
  // by the agent's write): a folder of the agent's own.
  return config_.work_dir + "/serve-tokens/job-" + std::to_string(job_id_) + "-attempt-" +
         std::to_string(attempt_) + ".json";
}

Status JobRun::SetServeTokens(const std::vector<std::string>& tokens) {
  KILN_RETURN_IF_ERROR(MakeDirs(config_.work_dir + "/serve-tokens"));
  return WriteFileAtomic(ServeTokensPath(),
                         serve::TokenFileText(std::set<std::string>(tokens.begin(), tokens.end())),
                         0644);
}

Status JobRun::StartServer() {
  const ServeSpec& serve = *spec_.serve;
  char delay[32];
  std::snprintf(delay, sizeof delay, "%g", serve.max_delay_ms);
  const int64_t threads =
      std::max<int64_t>(1, spec_.resources.threads_per_rank > 0 ? spec_.resources.threads_per_rank
                                                                : spec_.resources.cpus_per_rank);
  std::vector<std::string> argv = {
      config_.serve_path,
      "--spec",
      run_dir_ + "/spec.json",
      "--checkpoint",
      launch_.resume_path.empty() ? run_dir_ + "/resume.ckpt" : launch_.resume_path,
      "--name",
      serve.service,
      "--version",
      std::to_string(serve.model_job) + ":" + std::to_string(serve.model_step),
      "--listen",
      (config_.address.find(':') != std::string::npos ? "[" + config_.address + "]"
                                                      : config_.address) +
          ":0",
      "--tokens",
      ServeTokensPath(),
      "--max-batch",
      std::to_string(serve.max_batch),
      "--max-delay-ms",
      delay,
      "--threads",
      std::to_string(threads),
      "--report",
      "ipc://" + run_dir_ + "/agent.sock"};
  auto group = StartGroup(argv, RankEnvironment());
  if (!group.ok()) return group.status();
  group_ = std::move(group).value();
  sink_(protocol::Encode(protocol::JobStarted{job_id_, attempt_, group_->pid()}));
  spdlog::info("job {} attempt {}: started kiln-serve (pid {}) for service {} in {}", job_id_,
               attempt_, group_->pid(), serve.service, run_dir_);
  return Status::Ok();
}

}  // namespace kiln::agent
