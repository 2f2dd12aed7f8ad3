#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common/credentials.h"
#include "common/file_util.h"
#include "scheduler/cli/checkpoint_pull.h"
#include "scheduler/cli/cli_common.h"
#include "scheduler/cli/commands.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

int Commands::CheckpointsList() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::CheckpointsRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatCheckpoints(reply->data));
  return 0;
}

Result<int64_t> Commands::ChosenStep(SchedulerClient& client) {
  if (!best_) return step_;
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_}));
  if (!reply.ok()) return reply.status();
  return BestCheckpointStep(reply->data);
}

int Commands::CheckpointsPull() {
  SchedulerClient client = MakeClient(global_);
  auto step = ChosenStep(client);
  if (!step.ok()) return ReportError(step.status());
  auto pulled = PullCheckpoint(client, job_id_, *step, out_dir_);
  if (!pulled.ok()) return ReportError(pulled.status());
  std::cout << pulled->path << std::endl;
  std::cerr << "checkpoint " << pulled->step << " of job " << job_id_ << ": "
            << FormatBytes(pulled->bytes) << ", sha256 " << pulled->sha256 << " verified\n";
  return 0;
}

int Commands::CheckpointsRemove() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::CheckpointRemove{job_id_, step_}));
  if (!reply.ok()) return ReportError(reply.status());
  const bool removed = reply->data.value("removed", false);
  std::cout << "checkpoint " << step_ << " of job " << job_id_
            << (removed ? " removed" : " was not there") << std::endl;
  return 0;
}

namespace {

std::string CacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/kiln";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/kiln";
  return "/tmp/kiln-cache-" + std::to_string(::getuid());
}

// kiln-predict beside this executable, or $KILN_PREDICT.
std::string PredictBinary() {
  if (const char* env = std::getenv("KILN_PREDICT"); env && *env) return env;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "kiln-predict";
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / "kiln-predict").string();
}

}  // namespace

int Commands::Predict() {
  if (job_id_ <= 0) {
    return ReportError(
        Status::InvalidArgument("give a job id (kiln predict ID --input FILE), or "
                                "--service NAME"));
  }
  SchedulerClient client = MakeClient(global_);
  auto show = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_}));
  if (!show.ok()) return ReportError(show.status());
  auto step = best_ ? BestCheckpointStep(show->data) : Result<int64_t>(step_);
  if (!step.ok()) return ReportError(step.status());
  const std::string dir = CacheDir() + "/checkpoints";
  auto pulled = PullCheckpoint(client, job_id_, *step, dir);
  if (!pulled.ok()) return ReportError(pulled.status());
  const std::string spec_path = dir + "/job-" + std::to_string(job_id_) + ".spec.json";
  Status wrote = WriteFileAtomic(spec_path, show->data["spec"].dump(2));
  if (!wrote.ok()) return ReportError(wrote);
  std::cerr << "predicting with checkpoint " << pulled->step << " of job " << job_id_ << "\n";
  return RunPredict({"--spec", spec_path, "--checkpoint", pulled->path});
}

int Commands::PredictWithService() {
  SchedulerClient client = MakeClient(global_);
  auto services =
      ReplyAs<protocol::DataReply>(client.Call(protocol::ServicesRequest{service_name_}));
  if (!services.ok()) return ReportError(services.status());
  if (!services->data.is_array() || services->data.empty()) {
    return ReportError(Status::NotFound("no service " + service_name_));
  }
  const json& view = services->data[0];
  std::string endpoints;
  for (const auto& e : view.value("endpoints", json::array())) {
    if (e.is_string()) endpoints += (endpoints.empty() ? "" : ",") + e.get<std::string>();
  }
  if (endpoints.empty()) {
    return ReportError(Status::Unavailable("service " + service_name_ +
                                           " has no ready replica "
                                           "now (kiln services " +
                                           service_name_ + " says why)"));
  }
  // The input is read as the model reads it, which takes the spec the replicas run (the trained
  // job's model and data), in the view of one service.
  if (!view.contains("spec") || !view["spec"].is_object()) {
    return ReportError(Status::Internal("the scheduler did not send the service's spec"));
  }
  const std::string dir = CacheDir() + "/services";
  Status made = MakeDirs(dir);
  if (!made.ok()) return ReportError(made);
  const std::string spec_path = dir + "/" + service_name_ + ".spec.json";
  Status wrote = WriteFileAtomic(spec_path, view["spec"].dump(2), 0600);
  if (!wrote.ok()) return ReportError(wrote);
  const ClientSettings settings = ResolveSettings(global_);
  // Never the kiln token itself: the replica runs as the service's owner (docs/serving.md).
  ::setenv("KILN_SERVICE_TOKEN",
           ServiceCallToken(AccessTokenDigest(settings.token), service_name_).c_str(), 1);
  std::cerr << "predicting with service " << service_name_ << " (model "
            << view.value("version", "") << ", " << view.value("ready", 0) << " ready replicas)\n";
  return RunPredict(
      {"--spec", spec_path, "--service", service_name_, "--service-endpoints", endpoints});
}

int Commands::RunPredict(std::vector<std::string> model_args) {
  std::vector<std::string> args = {PredictBinary()};
  args.insert(args.end(), model_args.begin(), model_args.end());
  args.insert(args.end(), {"--input", input_});
  if (!labels_.empty()) args.insert(args.end(), {"--labels", labels_});
  if (!output_.empty()) args.insert(args.end(), {"--output", output_});
  if (json_) args.push_back("--json");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  return ReportError(
      Status::Unavailable("cannot run " + args[0] + " (build kiln-predict, or set KILN_PREDICT)"));
}

}  // namespace kiln::cli
