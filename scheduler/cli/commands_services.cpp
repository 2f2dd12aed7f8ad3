// kiln deploy, undeploy, services, service grant/revoke (docs/serving.md).
#include <iostream>

#include "common/credentials.h"
#include "common/job_spec.h"
#include "scheduler/cli/cli_common.h"
#include "scheduler/cli/commands.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

// "12" or "12:300" (job, and step; -1: not given).
Result<std::pair<int64_t, int64_t>> ParseModelRef(const std::string& text) {
  const size_t colon = text.find(':');
  auto number = [](const std::string& s) -> std::optional<int64_t> {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    return std::stoll(s);
  };
  auto job = number(text.substr(0, colon));
  std::optional<int64_t> step =
      colon == std::string::npos ? std::optional<int64_t>(-1) : number(text.substr(colon + 1));
  if (!job || *job <= 0 || !step) {
    return Status::InvalidArgument(
        "JOB[:STEP]: expected a job id and optionally a checkpoint "
        "step, like 12 or 12:300, got \"" +
        text + "\"");
  }
  return std::make_pair(*job, *step);
}

}  // namespace

int Commands::Deploy() {
  if (service_name_.empty() == update_name_.empty()) {
    return ReportError(Status::InvalidArgument(
        "give --name NAME for a new service, or --update NAME to roll an existing one"));
  }
  auto model = ParseModelRef(model_ref_);
  if (!model.ok()) return ReportError(model.status());
  if (model->second >= 0 && best_) {
    return ReportError(Status::InvalidArgument("JOB:STEP and --best: give one"));
  }
  protocol::DeployRequest request;
  request.name = update_name_.empty() ? service_name_ : update_name_;
  request.update = !update_name_.empty();
  request.job_id = model->first;
  if (model->second >= 0) request.step = model->second;
  request.best = best_;
  if (replicas_ >= 0) request.replicas = replicas_;
  if (cpus_per_replica_ > 0) request.cpus_per_replica = cpus_per_replica_;
  if (!memory_per_replica_.empty()) request.memory_per_replica = memory_per_replica_;
  if (gpus_per_replica_ >= 0) request.gpus_per_replica = gpus_per_replica_;
  if (max_batch_ > 0) request.max_batch = max_batch_;
  if (max_delay_ms_ >= 0) request.max_delay_ms = max_delay_ms_;
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(request));
  if (!reply.ok()) return ReportError(reply.status());
  json view = reply->data;
  std::cerr << (request.update ? "rolling service " : "deployed service ") << request.name
            << " to model " << view.value("version", "") << " (" << view.value("replicas", 0)
            << " replicas)\n";
  // Wait until every replica of the new model is ready (and no old one is left).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s_);
  while (wait_s_ > 0) {
    const bool done = !view.value("rolling", true) &&
                      view.value("ready", int64_t{0}) >= view.value("replicas", int64_t{0});
    if (done) break;
    if (view.value("state", "") == "failed") {
      std::cerr << "kiln: service " << request.name << " failed: " << view.value("reason", "")
                << "\n";
      return kExitFailed;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::cerr << "kiln: service " << request.name << " not ready after " << wait_s_
                << " s (kiln services " << request.name << " shows why)\n";
      return kExitFailed;
    }
    SleepMs(200);
    auto again = ReplyAs<protocol::DataReply>(client.Call(protocol::ServicesRequest{request.name}));
    if (!again.ok()) return ReportError(again.status());
    if (!again->data.is_array() || again->data.empty()) break;
    view = again->data[0];
  }
  if (json_) {
    std::cout << view.dump(2) << "\n";
  } else {
    std::cout << FormatServices(json::array({view}));
  }
  return 0;
}

int Commands::Undeploy() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::UndeployRequest{service_name_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << "service " << service_name_ << " undeployed ("
            << reply->data.value("stopped_replicas", 0) << " replicas stopped)\n";
  return 0;
}

int Commands::Services() {
  SchedulerClient client = MakeClient(global_);
  protocol::ServicesRequest request;
  if (!service_name_.empty()) request.name = service_name_;
  auto reply = ReplyAs<protocol::DataReply>(client.Call(request));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatServices(reply->data));
  return 0;
}

int Commands::ServiceToken() {
  const ClientSettings settings = ResolveSettings(global_);
  if (settings.token.empty()) {
    return ReportError(settings.problem.ok() ? Status::Unauthenticated("no token: kiln login first")
                                             : settings.problem);
  }
  if (!IsValidServiceName(service_name_)) {
    return ReportError(Status::InvalidArgument("NAME: " + ServiceNameRule()));
  }
  std::cout << ServiceCallToken(AccessTokenDigest(settings.token), service_name_) << "\n";
  return 0;
}

int Commands::ServiceGrant(bool revoke) {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::ServiceGrantRequest{service_name_, grant_user_, revoke}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << "service " << service_name_ << ": " << grant_user_
            << (revoke ? " may no longer call it\n" : " may call it\n");
  return 0;
}

}  // namespace kiln::cli
