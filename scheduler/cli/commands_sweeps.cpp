// kiln sweep FILE, kiln sweep show ID.
#include <filesystem>
#include <iostream>

#include "common/file_util.h"
#include "common/ids.h"
#include "scheduler/cli/cli_common.h"
#include "scheduler/cli/commands.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

int Commands::SweepSubmit() {
  if (file_.empty()) {
    return ReportError(Status::InvalidArgument(
        "FILE: give the sweep to run (kiln sweep SWEEP.json), or `kiln sweep show ID`"));
  }
  auto text = ReadFile(file_);
  if (!text.ok()) return ReportError(Status::InvalidArgument(text.status().message()));
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return ReportError(Status::InvalidArgument(file_ + ": not a JSON object"));
  }
  // "base" may name the job spec's file, relative to the sweep's.
  if (doc.contains("base") && doc["base"].is_string()) {
    std::filesystem::path base = doc["base"].get<std::string>();
    if (base.is_relative()) base = std::filesystem::path(file_).parent_path() / base;
    auto base_text = ReadFile(base.string());
    if (!base_text.ok()) {
      return ReportError(Status::InvalidArgument("base: " + base_text.status().message()));
    }
    doc["base"] = json::parse(*base_text, nullptr, false);
    if (doc["base"].is_discarded()) {
      return ReportError(Status::InvalidArgument("base: " + base.string() + " is not JSON"));
    }
  }
  if (!doc.contains("base") || !doc["base"].is_object()) {
    return ReportError(Status::InvalidArgument(
        "base: the job spec every trial starts from, an object or a file name"));
  }
  json spec = doc["base"];
  doc.erase("base");
  protocol::SubmitRequest request{NewRequestId(), spec, std::nullopt, std::nullopt, "", hold_};
  request.sweep = doc;
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::SubmitReply>(client.Call(request));
  if (!reply.ok()) return ReportError(reply.status());
  if (reply->warning) {
    std::cerr << "kiln: warning: sweep " << reply->job_id
              << "'s trials are queued but cannot start now: " << *reply->warning << "\n";
  }
  std::cout << (json_ ? json{{"job_id", reply->job_id}}.dump() : std::to_string(reply->job_id))
            << std::endl;
  return 0;
}

int Commands::SweepShow() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  const json& job = reply->data;
  if (!job.contains("sweep")) {
    return ReportError(Status::InvalidArgument("job " + std::to_string(job_id_) +
                                               " is not a sweep (kiln show " +
                                               std::to_string(job_id_) + ")"));
  }
  if (json_) {
    json out = job["sweep"];
    for (const char* key : {"id", "name", "state", "reason", "user"}) {
      if (job.contains(key)) out[key] = job[key];
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << FormatSweep(job);
  return 0;
}

}  // namespace kiln::cli
