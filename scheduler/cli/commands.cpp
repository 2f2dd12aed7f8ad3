#include "scheduler/cli/commands.h"

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "common/config.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/job_spec.h"
#include "scheduler/cli/output.h"
#include "scheduler/cli/scheduler_client.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

int ReportError(const Status& status) {
  std::cerr << "kiln: " << status.message() << "\n";
  if (status.code() == StatusCode::kUnavailable) return kExitUnreachable;
  if (status.code() == StatusCode::kInvalidArgument) return kExitUsage;
  return kExitFailed;
}

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

Commands::Commands(CLI::App& app) : app_(app) {
  app.add_option("--scheduler", global_.scheduler,
                 std::string("scheduler address (default: $") + kSchedulerEnvVar + " or " +
                     kDefaultSchedulerAddress + ")");
  app.add_option("--timeout", global_.timeout_s, "seconds to wait for each reply")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.require_subcommand(1);

  submit_ = app.add_subcommand("submit", "submit a job spec; prints the new job id");
  submit_->add_option("FILE", file_, "job spec (JSON)")->required();
  submit_->add_flag("--follow,-f", follow_, "follow the job's progress until it ends");
  submit_->add_flag("--json", json_, "print {\"job_id\": N}");

  queue_ = app.add_subcommand("queue", "list pending and running jobs");
  queue_->add_flag("--all,-a", all_, "include finished jobs");
  queue_->add_flag("--json", json_, "print a JSON array");

  show_ = app.add_subcommand("show", "show one job: state, reason, metrics, events, checkpoints");
  show_->add_option("ID", job_id_, "job id")->required();
  show_->add_flag("--json", json_, "print a JSON object");
  show_->add_option("--metric", metric_, "print only this metric's latest value (e.g. test_accuracy)");

  cancel_ = app.add_subcommand("cancel", "cancel a pending or running job");
  cancel_->add_option("ID", job_id_, "job id")->required();

  logs_ = app.add_subcommand("logs", "print a job's output (all ranks, through mpirun)");
  logs_->add_option("ID", job_id_, "job id")->required();
  logs_->add_flag("--follow,-f", follow_, "keep printing until the job ends");
  logs_->add_flag("--json", json_, "print JSON lines {seq, attempt, time, line}");

  nodes_ = app.add_subcommand("nodes", "list workers and their slots");
  nodes_->add_flag("--json", json_, "print a JSON array");

  CLI::App* ckpt = app.add_subcommand("ckpt", "checkpoints of a job");
  ckpt->require_subcommand(1);
  ckpt_ls_ = ckpt->add_subcommand("ls", "list a job's checkpoints");
  ckpt_ls_->add_option("ID", job_id_, "job id")->required();
  ckpt_ls_->add_flag("--json", json_, "print a JSON array of {step, epoch, metrics, bytes, sha256}");
}

int Commands::RunSelected() {
  if (submit_->parsed()) return Submit();
  if (queue_->parsed()) return Queue();
  if (show_->parsed()) return Show();
  if (cancel_->parsed()) return Cancel();
  if (logs_->parsed()) return Logs();
  if (nodes_->parsed()) return Nodes();
  if (ckpt_ls_->parsed()) return CheckpointsList();
  std::cerr << app_.help();
  return kExitUsage;
}

namespace {
SchedulerClient MakeClient(const GlobalOptions& g) {
  return SchedulerClient(ResolveSchedulerAddress(g.scheduler), static_cast<int>(g.timeout_s * 1000));
}
}  // namespace

int Commands::Submit() {
  auto text = ReadFile(file_);
  if (!text.ok()) return ReportError(Status::InvalidArgument(text.status().message()));
  SpecParseResult parsed = ParseJobSpecText(*text);
  if (!parsed.ok()) {
    std::cerr << "kiln: job spec " << file_ << " rejected (" << parsed.errors.size()
              << " error" << (parsed.errors.size() == 1 ? "" : "s") << "):\n";
    for (const auto& e : parsed.errors) std::cerr << "  " << e.ToString() << "\n";
    return kExitUsage;
  }
  SchedulerClient client = MakeClient(global_);
  protocol::SubmitRequest request{NewRequestId(), json::parse(*text)};
  auto reply = ReplyAs<protocol::SubmitReply>(client.Call(request));
  if (!reply.ok() && reply.status().code() == StatusCode::kUnavailable) {
    // Safe to repeat: the request id makes the scheduler return the same job.
    reply = ReplyAs<protocol::SubmitReply>(client.Call(request));
  }
  if (!reply.ok()) return ReportError(reply.status());
  if (json_) {
    std::cout << json{{"job_id", reply->job_id}}.dump() << std::endl;
  } else {
    std::cout << reply->job_id << std::endl;
  }
  return follow_ ? Follow(reply->job_id) : 0;
}

int Commands::Follow(int64_t job_id) {
  SchedulerClient client = MakeClient(global_);
  const bool tty = ::isatty(STDERR_FILENO);
  std::string last_line;
  int unreachable = 0;
  while (true) {
    auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id}));
    if (!reply.ok()) {
      if (reply.status().code() == StatusCode::kUnavailable && ++unreachable < 6) continue;
      return ReportError(reply.status());
    }
    unreachable = 0;
    const json& job = reply->data;
    std::string line = FormatProgress(job);
    const std::string state = job.value("state", "");
    if (line != last_line) {
      if (tty) {
        std::cerr << "\r\033[K" << line << std::flush;
      } else {
        std::cerr << line << "\n";
      }
      last_line = line;
    }
    if (state == "COMPLETED" || state == "FAILED" || state == "CANCELLED") {
      if (tty) std::cerr << "\n";
      std::cerr << "job " << job_id << " " << state;
      if (!job.value("reason", "").empty()) std::cerr << ": " << job.value("reason", "");
      std::cerr << "\n";
      return state == "COMPLETED" ? 0 : kExitFailed;
    }
    Sleep(tty ? 300 : 2000);
  }
}

int Commands::Queue() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::QueueRequest{all_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatQueue(reply->data));
  return 0;
}

int Commands::Show() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  if (!metric_.empty()) {
    const json& metrics = reply->data["metrics"];
    if (!metrics.is_object() || !metrics.contains(metric_)) {
      return ReportError(Status::NotFound("job " + std::to_string(job_id_) +
                                          " has not reported metric \"" + metric_ + "\""));
    }
    std::cout << metrics[metric_].dump() << std::endl;
    return 0;
  }
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatJob(reply->data));
  return 0;
}

int Commands::Cancel() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::CancelReply>(client.Call(protocol::CancelRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << "job " << reply->job_id << " " << reply->state << std::endl;
  return 0;
}

int Commands::Logs() {
  SchedulerClient client = MakeClient(global_);
  int64_t after = 0;
  while (true) {
    auto reply = ReplyAs<protocol::DataReply>(
        client.Call(protocol::LogsRequest{job_id_, after, 5000}));
    if (!reply.ok()) return ReportError(reply.status());
    const json& data = reply->data;
    for (const auto& l : data["lines"]) {
      after = l.value("seq", after);
      if (json_) {
        std::cout << l.dump() << "\n";
      } else {
        std::cout << l.value("line", "") << "\n";
      }
    }
    std::cout.flush();
    if (!data["lines"].empty()) continue;  // more may be waiting
    if (!follow_ || data.value("finished", true)) return 0;
    Sleep(500);
  }
}

int Commands::Nodes() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::NodesRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatNodes(reply->data));
  return 0;
}

int Commands::CheckpointsList() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::CheckpointsRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatCheckpoints(reply->data));
  return 0;
}

}  // namespace kiln::cli
