#include "scheduler/cli/commands.h"

#include <limits.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/config.h"
#include "common/credentials.h"
#include "common/transport/curve.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/job_spec.h"
#include "scheduler/cli/checkpoint_pull.h"
#include "scheduler/cli/output.h"
#include "scheduler/cli/scheduler_client.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitRefused = 4;

int ReportError(const Status& status) {
  std::cerr << "kiln: " << status.message() << "\n";
  if (status.code() == StatusCode::kUnavailable) return kExitUnreachable;
  if (status.code() == StatusCode::kInvalidArgument) return kExitUsage;
  if (status.code() == StatusCode::kUnauthenticated ||
      status.code() == StatusCode::kPermissionDenied) {
    return kExitRefused;
  }
  return kExitFailed;
}

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

Commands::Commands(CLI::App& app) : app_(app) {
  app.add_option("--scheduler", global_.scheduler,
                 std::string("scheduler address (default: $") + kSchedulerEnvVar + " or " +
                     kDefaultSchedulerAddress + ")");
  app.add_option("--credentials", global_.credentials,
                 std::string("credentials file (default: $") + kCredentialsEnvVar +
                     " or ~/.config/kiln/credentials.json; written by kiln login)");
  app.add_option("--timeout", global_.timeout_s, "seconds to wait for each reply")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.require_subcommand(1);

  login_ = app.add_subcommand("login", "save the scheduler's address and key and your token "
                                      "(read from stdin, never from the command line)");
  login_->add_option("--server-key", server_key_, "the scheduler's public key, or a file holding "
                                                  "it (kiln-scheduler key show)")->required();
  login_->add_option("--token-file", token_file_, "read the token from this file instead of stdin");
  whoami_ = app.add_subcommand("whoami", "print the user your token belongs to");

  submit_ = app.add_subcommand("submit", "submit a job spec; prints the new job id");
  submit_->add_option("FILE", file_, "job spec (JSON)")->required();
  submit_->add_flag("--follow,-f", follow_, "follow the job's progress until it ends");
  submit_->add_flag("--json", json_, "print {\"job_id\": N}");
  submit_->add_option("--resume-from", resume_from_,
                      "start from a checkpoint of job ID (its latest, or ID:STEP)");
  submit_->add_flag("--hold", hold_, "queue the job held: it waits until `kiln release`");

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
  ckpt_pull_ = ckpt->add_subcommand("pull", "download a checkpoint, verified by its sha256");
  ckpt_pull_->add_option("ID", job_id_, "job id")->required();
  auto* pull_step = ckpt_pull_->add_option("--step", step_, "checkpoint step (default: latest)");
  ckpt_pull_->add_flag("--best", best_, "the best by the job's keep_best metric "
                                        "(default test_accuracy)")->excludes(pull_step);
  ckpt_pull_->add_option("-o,--output-dir", out_dir_, "folder to write into")->capture_default_str();
  ckpt_rm_ = ckpt->add_subcommand("rm", "delete a checkpoint");
  ckpt_rm_->add_option("ID", job_id_, "job id")->required();
  ckpt_rm_->add_option("--step", step_, "checkpoint step")->required();

  hold_cmd_ = app.add_subcommand("hold", "admin: keep a pending job from being scheduled");
  hold_cmd_->add_option("ID", job_id_, "job id")->required();
  release_ = app.add_subcommand("release", "admin: let a held job be scheduled again");
  release_->add_option("ID", job_id_, "job id")->required();
  priority_cmd_ = app.add_subcommand("priority", "admin: set a job's priority (higher goes first)");
  priority_cmd_->add_option("ID", job_id_, "job id")->required();
  priority_cmd_->add_option("PRIORITY", priority_, "new priority")->required();
  CLI::App* node = app.add_subcommand("node", "admin: drain or resume a worker node");
  node->require_subcommand(1);
  drain_ = node->add_subcommand("drain", "no new jobs on the node; running jobs finish");
  drain_->add_option("NAME", node_, "node name (see kiln nodes)")->required();
  drain_->add_option("--reason", drain_reason_, "shown by kiln nodes");
  drain_->add_flag("--requeue", requeue_, "also stop the jobs running there now: each saves a "
                                          "checkpoint on SIGTERM and waits to resume elsewhere "
                                          "(no retry is used up)");
  node_resume_ = node->add_subcommand("resume", "let a drained node take jobs again");
  node_resume_->add_option("NAME", node_, "node name")->required();

  predict_ = app.add_subcommand("predict", "predict with a job's trained model");
  predict_->add_option("ID", job_id_, "job id")->required();
  auto* predict_step = predict_->add_option("--step", step_, "checkpoint step (default: latest)");
  predict_->add_flag("--best", best_, "the best checkpoint by the job's keep_best metric")
      ->excludes(predict_step);
  predict_->add_option("--input", input_, "CSV rows of features, or IDX images (.gz or not)")
      ->required();
  predict_->add_option("--labels", labels_, "true labels (IDX, or one per line) to report accuracy");
  predict_->add_option("--output", output_, "write predictions here instead of stdout");
  predict_->add_flag("--json", json_, "one JSON object per prediction");
}

int Commands::RunSelected() {
  if (login_->parsed()) return Login();
  if (whoami_->parsed()) return WhoAmI();
  if (submit_->parsed()) return Submit();
  if (queue_->parsed()) return Queue();
  if (show_->parsed()) return Show();
  if (cancel_->parsed()) return Cancel();
  if (logs_->parsed()) return Logs();
  if (nodes_->parsed()) return Nodes();
  if (ckpt_ls_->parsed()) return CheckpointsList();
  if (ckpt_pull_->parsed()) return CheckpointsPull();
  if (ckpt_rm_->parsed()) return CheckpointsRemove();
  if (predict_->parsed()) return Predict();
  if (hold_cmd_->parsed()) return JobAdmin("hold");
  if (release_->parsed()) return JobAdmin("release");
  if (priority_cmd_->parsed()) return JobAdmin("priority");
  if (drain_->parsed()) return NodeAdmin(requeue_ ? "drain_requeue" : "drain");
  if (node_resume_->parsed()) return NodeAdmin("resume");
  std::cerr << app_.help();
  return kExitUsage;
}

namespace {

std::string CredentialsPath(const GlobalOptions& g) {
  return g.credentials.empty() ? DefaultCredentialsPath() : g.credentials;
}

// Address: --scheduler, $KILN_SCHEDULER, the credentials file, the default. Server key:
// $KILN_SERVER_KEY (a key or a file), else the credentials file. Token: the credentials file.
ClientSettings ResolveSettings(const GlobalOptions& g) {
  ClientSettings settings;
  settings.timeout_ms = static_cast<int>(g.timeout_s * 1000);
  auto credentials = LoadCredentials(CredentialsPath(g));
  if (!credentials.ok()) {
    settings.problem = Status::Unauthenticated(credentials.status().message());
  } else {
    settings.address = credentials->scheduler;
    settings.server_key = credentials->server_key;
    settings.token = credentials->token;
    settings.user = credentials->user;
  }
  const bool address_given = !g.scheduler.empty() || std::getenv(kSchedulerEnvVar) != nullptr;
  if (address_given || settings.address.empty()) {
    settings.address = ResolveSchedulerAddress(g.scheduler);
  }
  if (const char* key = std::getenv("KILN_SERVER_KEY"); key != nullptr && *key != '\0') {
    auto resolved = transport::ResolvePublicKey(key);
    if (!resolved.ok()) {
      settings.problem = Status::InvalidArgument("KILN_SERVER_KEY: " + resolved.status().message());
    } else {
      settings.server_key = *resolved;
    }
  }
  if (settings.problem.ok() && !transport::IsCurveKey(settings.server_key)) {
    settings.problem = Status::InvalidArgument(
        "credentials file " + CredentialsPath(g) + ": server_key is not a CURVE public key; run "
        "`kiln login` again");
  }
  return settings;
}

SchedulerClient MakeClient(const GlobalOptions& g) { return SchedulerClient(ResolveSettings(g)); }

// The token, from a file or stdin (without echo on a terminal), trimmed.
Result<std::string> ReadToken(const std::string& file) {
  std::string token;
  if (!file.empty()) {
    auto text = ReadFile(file);
    if (!text.ok()) return Status::InvalidArgument("--token-file: " + text.status().message());
    token = *text;
  } else {
    const bool tty = ::isatty(STDIN_FILENO);
    termios saved{};
    if (tty) {
      std::cerr << "token: " << std::flush;
      ::tcgetattr(STDIN_FILENO, &saved);
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::getline(std::cin, token);
    if (tty) {
      ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      std::cerr << "\n";
    }
  }
  token = TrimWhitespace(token);
  if (!LooksLikeAccessToken(token)) {
    return Status::InvalidArgument("that is not a kiln token (kiln_ and 64 hex digits, as "
                                   "kiln-scheduler user add printed it)");
  }
  return token;
}

}  // namespace

int Commands::Login() {
  auto key = transport::ResolvePublicKey(server_key_);
  if (!key.ok()) return ReportError(Status::InvalidArgument("--server-key: " + key.status().message()));
  auto token = ReadToken(token_file_);
  if (!token.ok()) return ReportError(token.status());
  ClientSettings settings;
  settings.address = ResolveSchedulerAddress(global_.scheduler);
  settings.server_key = *key;
  settings.token = *token;
  settings.timeout_ms = static_cast<int>(global_.timeout_s * 1000);
  SchedulerClient client(settings);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::WhoAmIRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  const std::string user = reply->data.value("user", "");
  const std::string path = CredentialsPath(global_);
  Status saved = SaveCredentials(path, {settings.address, *key, user, *token});
  if (!saved.ok()) return ReportError(saved);
  std::cout << "logged in to " << settings.address << " as " << user
            << (reply->data.value("admin", false) ? " (admin)" : "") << "; credentials in "
            << path << std::endl;
  return 0;
}

int Commands::WhoAmI() {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(client.Call(protocol::WhoAmIRequest{}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << reply->data.value("user", "") << (reply->data.value("admin", false) ? " (admin)" : "")
            << " at " << client.address() << std::endl;
  return 0;
}

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
  protocol::SubmitRequest request{NewRequestId(), json::parse(*text), std::nullopt, std::nullopt,
                                  "", hold_};  // the scheduler takes the user from the token
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

int Commands::JobAdmin(const std::string& action) {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::JobAdminRequest{job_id_, action, priority_}));
  if (!reply.ok()) return ReportError(reply.status());
  const json& job = reply->data;
  std::cout << "job " << job.value("id", job_id_) << " " << job.value("state", "")
            << (job.value("held", false) ? " (held)" : "") << ", priority "
            << job.value("priority", 0) << std::endl;
  return 0;
}

int Commands::NodeAdmin(const std::string& action) {
  SchedulerClient client = MakeClient(global_);
  auto reply = ReplyAs<protocol::DataReply>(
      client.Call(protocol::NodeAdminRequest{node_, action, drain_reason_}));
  if (!reply.ok()) return ReportError(reply.status());
  std::cout << "node " << reply->data.value("name", node_) << " "
            << reply->data.value("state", "") << std::endl;
  return 0;
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
  std::vector<std::string> args = {PredictBinary(), "--spec", spec_path, "--checkpoint",
                                   pulled->path, "--input", input_};
  if (!labels_.empty()) args.insert(args.end(), {"--labels", labels_});
  if (!output_.empty()) args.insert(args.end(), {"--output", output_});
  if (json_) args.push_back("--json");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  return ReportError(Status::Unavailable("cannot run " + args[0] +
                                         " (build kiln-predict, or set KILN_PREDICT)"));
}

}  // namespace kiln::cli
