#include <sys/ioctl.h>
#include <unistd.h>

#include <cctype>
#include <iostream>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/job_array.h"
#include "common/job_spec.h"
#include "scheduler/cli/cli_common.h"
#include "scheduler/cli/commands.h"
#include "scheduler/cli/log_filter.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

int Commands::Submit() {
  auto text = ReadFile(file_);
  if (!text.ok()) return ReportError(Status::InvalidArgument(text.status().message()));
  SpecParseResult parsed = ParseJobSpecText(*text);
  if (!array_.empty() && !parsed.ok()) {  // "${array_index}" in a number's place: the scheduler
    parsed.errors.clear();                // checks each task's spec with its index in
  }
  if (!parsed.ok()) {
    std::cerr << "kiln: job spec " << file_ << " rejected (" << parsed.errors.size()
              << " error" << (parsed.errors.size() == 1 ? "" : "s") << "):\n";
    for (const auto& e : parsed.errors) std::cerr << "  " << e.ToString() << "\n";
    return kExitUsage;
  }
  SchedulerClient client = MakeClient(global_);
  protocol::SubmitRequest request{NewRequestId(), json::parse(*text), std::nullopt, std::nullopt,
                                  "", hold_};  // the scheduler takes the user from the token
  if (!array_.empty()) {
    auto array = ParseArraySpec(array_);
    if (!array.ok()) {
      return ReportError(Status::InvalidArgument("--" + array.status().message()));
    }
    request.array = array_;
  }
  if (!resume_from_.empty()) {
    try {
      size_t colon = resume_from_.find(':');
      request.resume_from_job = std::stoll(resume_from_.substr(0, colon));
      if (colon != std::string::npos) request.resume_from_step = std::stoll(resume_from_.substr(colon + 1));
    } catch (const std::exception&) {
      return ReportError(Status::InvalidArgument("--resume-from: expected ID or ID:STEP, got \"" +
                                                 resume_from_ + "\""));
    }
  }
  auto reply = ReplyAs<protocol::SubmitReply>(client.Call(request));
  if (!reply.ok() && reply.status().code() == StatusCode::kUnavailable &&
      client.last_timeout_reached_scheduler()) {
    // A scheduler that took the request but did not answer in time (busy, or restarting): safe
    // to repeat, the request id makes the scheduler return the same job. A scheduler that is not
    // there is reported at once, within the --timeout the message names.
    reply = ReplyAs<protocol::SubmitReply>(client.Call(request));
  }
  if (!reply.ok()) return ReportError(reply.status());
  if (reply->warning) {
    std::cerr << "kiln: warning: job " << reply->job_id << " is queued but cannot start now: "
              << *reply->warning << "\n";
  }
  if (json_) {
    json out = {{"job_id", reply->job_id}};
    if (reply->warning) out["warning"] = *reply->warning;
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << reply->job_id << std::endl;
  }
  return follow_ ? Follow(reply->job_id) : 0;
}

namespace {
// Columns of the terminal on `fd` (80 when it does not say), less one so the cursor never wraps.
size_t TerminalColumns(int fd) {
  struct winsize size {};
  if (::ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return 79;
  return size.ws_col - 1;
}

// The steps a followed job advanced since it was first seen running, for its time left.
class ProgressRate {
 public:
  std::optional<double> SecondsLeft(const json& job) {
    const json& m = job.contains("metrics") ? job["metrics"] : json::object();
    if (job.value("state", "") != "RUNNING" || !m.contains("step") ||
        !m["step"].is_number_integer() || !m.contains("total_steps")) {
      return std::nullopt;
    }
    const int64_t step = m["step"].get<int64_t>();
    const double now = static_cast<double>(SystemClock().MonotonicMs()) / 1000;
    if (!first_ || step < first_->first) first_ = {step, now};  // a resumed attempt: anew
    return EstimateSecondsLeft(first_->first, first_->second, step, now,
                               m.value("total_steps", int64_t{0}));
  }

 private:
  std::optional<std::pair<int64_t, double>> first_;
};
}  // namespace

int Commands::Follow(int64_t job_id) {
  SchedulerClient client = MakeClient(global_);
  const bool tty = ::isatty(STDERR_FILENO);
  std::string last_line;
  int unreachable = 0;
  ProgressRate rate;
  while (true) {
    auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id}));
    if (!reply.ok()) {
      if (reply.status().code() == StatusCode::kUnavailable && ++unreachable < 6) continue;
      if (tty && !last_line.empty()) std::cerr << "\r\033[K";  // the error on a clean line
      return ReportError(reply.status());
    }
    unreachable = 0;
    const json& job = reply->data;
    std::string line = tty ? FitToWidth(FormatProgressBar(job, rate.SecondsLeft(job)),
                                        TerminalColumns(STDERR_FILENO))
                           : FormatProgress(job);
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
    SleepMs(tty ? 300 : 2000);
  }
}

int Commands::JobAdmin(const std::string& action) {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::JobAdminRequest{job_id_, action, priority_, array_index_}));
  if (!reply.ok()) return ReportError(reply.status());
  const json& job = reply->data;
  const std::string name =
      job.contains("array_job")
          ? TaskName(job.value("array_job", int64_t{0}), job.value("array_index", int64_t{-1}))
          : std::to_string(job.value("id", job_id_));
  std::cout << (job.contains("array") ? "array " : "job ") << name << " " << job.value("state", "")
            << (job.value("held", false) ? " (held)" : "") << ", priority "
            << job.value("priority", 0) << std::endl;
  return 0;
}

int Commands::Queue() {
  SchedulerClient client = MakeClient(global_);
  protocol::QueueRequest request;
  request.all = all_;
  request.limit = 1000;
  if (!queue_user_.empty()) request.user = queue_user_;
  if (!queue_states_.empty()) {
    request.states.emplace();
    for (std::string state : queue_states_) {
      for (auto& c : state) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      request.states->push_back(state);
    }
    request.all = true;  // a finished state asked for by name is listed
  }
  json jobs = json::array();
  while (true) {  // pages of at most 1000 jobs (about 1 MiB)
    auto reply = ReplyAs<protocol::DataReply>(client.Call(request));
    if (!reply.ok()) return ReportError(reply.status());
    for (auto& job : reply->data["jobs"]) jobs.push_back(std::move(job));
    const json& next = reply->data["next_after_id"];
    if (!next.is_number_integer()) break;
    request.after_id = next.get<int64_t>();
  }
  std::cout << (json_ ? jobs.dump(2) + "\n" : FormatQueue(jobs, expand_));
  return 0;
}

int Commands::ResolveArrayTask() {
  SchedulerClient client = MakeClient(global_);
  auto reply =
      ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_, array_index_}));
  if (!reply.ok()) return ReportError(reply.status());
  job_id_ = reply->data.value("id", int64_t{0});
  array_index_.reset();
  return 0;
}

int Commands::Show() {
  SchedulerClient client = MakeClient(global_);
  auto reply =
      ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_, array_index_}));
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
  if (json_) {
    std::cout << reply->data.dump(2) << "\n";
    return 0;
  }
  std::cout << FormatJob(reply->data);
  // A scheduler from before metrics history answers with an error: then no sparkline.
  auto history = ReplyAs<protocol::DataReply>(
      client.Call(protocol::MetricsHistoryRequest{reply->data.value("id", job_id_)}));
  if (history.ok()) {
    const std::string spark = LossSparkline(history->data);
    if (!spark.empty()) std::cout << spark << "\n";
  }
  return 0;
}

int Commands::Metrics() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::MetricsHistoryRequest{job_id_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << (json_ ? reply->data.dump(2) + "\n" : FormatMetricsHistory(reply->data));
  return 0;
}

int Commands::Cancel() {
  SchedulerClient client = MakeClient(global_);
  auto reply =
      ReplyAs<protocol::CancelReply>(client.Call(protocol::CancelRequest{job_id_, array_index_}));
  if (!reply.ok()) return ReportError(reply.status());
  if (array_index_) {
    std::cout << "task " << TaskName(job_id_, *array_index_) << " (job " << reply->job_id << ") "
              << reply->state << std::endl;
  } else {
    std::cout << "job " << reply->job_id << " " << reply->state << std::endl;
  }
  return 0;
}

int Commands::Logs() {
  SchedulerClient client = MakeClient(global_);
  protocol::LogsRequest request{job_id_, 0, 5000};
  if (log_attempt_ > 0) request.attempt = log_attempt_;
  if (log_rank_ >= 0) request.rank = log_rank_;
  if (tail_ >= 0) request.tail = tail_;  // the first page only
  if (!since_.empty()) {
    auto since = ParseSince(since_, SystemClock().WallMs());
    if (!since) {
      return ReportError(Status::InvalidArgument(
          "--since: \"" + since_ + "\" is neither a time (\"2026-11-30 13:05\") nor a duration "
          "(\"10m\", \"2h\")"));
    }
    request.since_ms = *since;
  }
  LogFilter filter(raw_);
  // Following on a terminal: a live progress line under the output, redrawn in place.
  const bool status_line = follow_ && !json_ && ::isatty(STDOUT_FILENO);
  ProgressRate rate;
  std::string status;
  while (true) {
    auto reply = ReplyAs<protocol::DataReply>(client.Call(request));
    if (!reply.ok()) {
      if (!status.empty()) std::cout << "\r\033[K" << std::flush;  // the error on a clean line
      return ReportError(reply.status());
    }
    const json& data = reply->data;
    if (!status.empty() && !data["lines"].empty()) std::cout << "\r\033[K";  // lines go above it
    request.tail.reset();
    request.after_seq = data.value("next_after_seq", request.after_seq);
    for (const auto& l : data["lines"]) {
      if (json_) {
        std::cout << l.dump() << "\n";
        continue;
      }
      for (const auto& out : filter.Add(l.value("attempt", int64_t{0}),
                                        FormatTime(l.value("time", int64_t{0})),
                                        l.value("line", ""))) {
        std::cout << out << "\n";
      }
    }
    if (data.value("more", false)) continue;  // the next page is waiting
    if (!follow_ || data.value("finished", true)) {
      if (!status.empty()) std::cout << "\r\033[K";
      for (const auto& out : filter.Flush()) std::cout << out << "\n";
      std::cout.flush();
      return 0;
    }
    if (status_line) {
      auto job = ReplyAs<protocol::DataReply>(client.Call(protocol::ShowRequest{job_id_}));
      if (job.ok()) {
        const std::string fresh = FitToWidth(
            FormatProgressBar(job->data, rate.SecondsLeft(job->data)), TerminalColumns(1));
        if (fresh != status || !data["lines"].empty()) std::cout << "\r\033[K" << fresh;
        status = fresh;
      }
    }
    std::cout.flush();
    SleepMs(500);
  }
}

}  // namespace kiln::cli
