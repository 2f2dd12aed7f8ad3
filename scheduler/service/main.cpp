// kiln-scheduler: parses flags and runs the SchedulerService until SIGTERM/SIGINT.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>

#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/quantities.h"
#include "scheduler/service/admin_commands.h"
#include "scheduler/service/http_server.h"
#include "scheduler/service/scheduler_service.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln-scheduler: queues training jobs durably and places them on workers.\n"
                 "With no command it runs the daemon; key, user, worker and audit are the "
                 "admin's offline commands on the same --state-dir."};
  kiln::service::SchedulerOptions options;
  std::string log_level = "info";
  double worker_timeout_s = kiln::kDefaultWorkerTimeoutMs / 1000.0;
  app.add_option("--listen", options.listen, "ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:7070 "
                                             "(tcp://127.0.0.1:* picks a free port)")
      ->capture_default_str();
  app.add_option("--state-dir", options.state_dir, "directory for the SQLite state and checkpoints")
      ->required();
  std::string http;
  app.add_option("--http", http,
                 "HOST:PORT for the HTTP server (/metrics: Prometheus metrics; /api/v1: the API, "
                 "docs/api.md), e.g. "
                 "127.0.0.1:9470; PORT 0 picks a free one (written to STATE_DIR/http_endpoint). "
                 "Keep it on loopback unless the network is trusted; off when not given");
  app.add_option("--worker-timeout", worker_timeout_s,
                 "seconds of silence after which a worker is DOWN")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  double worker_lease_s = kiln::kDefaultWorkerLeaseMs / 1000.0;
  app.add_option("--worker-lease", worker_lease_s,
                 "seconds a worker cut off from the scheduler keeps its running attempts: its "
                 "agent stops them itself before this ends, and only then are they failed and "
                 "placed elsewhere (at least --worker-timeout)")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 86400.0));
  app.add_flag("--private-jobs", options.private_jobs,
               "kiln queue shows non-admins only their own jobs (otherwise other users' jobs are "
               "listed without specs, metrics or failure reasons)");
  bool no_backfill = false;
  std::string usage_unit = "ranks";
  std::vector<std::string> weights;
  bool single_node = false;
  app.add_flag("--single-node-gangs", single_node,
               "place every gang on one node (jobs that ask for several nodes wait)");
  app.add_flag("--no-backfill", no_backfill,
               "never start a job ahead of the blocked highest-priority job");
  app.add_option("--fair-share-half-life", options.fair_share_half_life_s,
                 "seconds for a user's past usage to count half as much")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 10.0 * 365 * 86400));
  app.add_option("--usage-unit", usage_unit, "what fair share counts: ranks (rank-seconds) or "
                                             "gpus (GPU-seconds)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ranks", "gpus"}));
  app.add_option("--user-weight", weights, "USER=WEIGHT: a user's fair share (default 1; "
                                           "repeatable), e.g. --user-weight alice=2");
  // Retention: how long what only grows is kept ("30d", "12h", seconds; 0 keeps it forever).
  std::map<std::string, std::string> keep = {
      {"--keep-logs", "30d"}, {"--keep-events", "90d"}, {"--keep-audit", "365d"},
      {"--keep-uploads", "2d"}};
  app.add_option("--keep-logs", keep["--keep-logs"],
                 "how long a finished job's log lines are kept (0: forever)")->capture_default_str();
  app.add_option("--keep-events", keep["--keep-events"],
                 "how long a finished job's events are kept (0: forever)")->capture_default_str();
  app.add_option("--keep-audit", keep["--keep-audit"],
                 "how long audit rows are kept (0: forever)")->capture_default_str();
  app.add_option("--keep-uploads", keep["--keep-uploads"],
                 "how long an untouched checkpoint upload is kept before it counts as abandoned "
                 "(0: forever)")->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  app.fallthrough();  // --state-dir may come after an admin command too
  app.require_subcommand(0, 1);
  kiln::service::AdminCommands admin(app);
  CLI11_PARSE(app, argc, argv);
  if (admin.Selected()) return admin.Run(options.state_dir);
  options.backfill = !no_backfill;
  options.multi_node = !single_node;
  options.usage_unit = usage_unit == "gpus" ? kiln::core::UsageUnit::kGpuSeconds
                                            : kiln::core::UsageUnit::kRankSeconds;
  for (const auto& w : weights) {
    const size_t eq = w.find('=');
    double weight = 0;
    try {
      weight = eq == std::string::npos ? 0 : std::stod(w.substr(eq + 1));
    } catch (const std::exception&) {
    }
    if (eq == 0 || eq == std::string::npos || !(weight > 0)) {
      std::fprintf(stderr, "kiln-scheduler: --user-weight: expected USER=WEIGHT with WEIGHT > 0, "
                           "got \"%s\"\n", w.c_str());
      return 2;
    }
    options.user_weights[w.substr(0, eq)] = weight;
  }
  options.worker_timeout_ms = static_cast<kiln::Millis>(worker_timeout_s * 1000);
  options.worker_lease_ms = static_cast<kiln::Millis>(worker_lease_s * 1000);
  if (options.worker_lease_ms < options.worker_timeout_ms) {
    std::fprintf(stderr, "kiln-scheduler: --worker-lease: %g s is shorter than --worker-timeout "
                         "(%g s); give it at least as long\n", worker_lease_s, worker_timeout_s);
    return 2;
  }
  for (auto& [flag, text] : keep) {
    auto seconds = text == "0" ? std::optional<int64_t>(0) : kiln::ParseDuration(text);
    if (!seconds || *seconds < 0 || *seconds > 100LL * 365 * 86400) {
      std::fprintf(stderr, "kiln-scheduler: %s: expected a duration such as 30d, 12h or 3600 "
                           "(0 keeps forever), got \"%s\"\n", flag.c_str(), text.c_str());
      return 2;
    }
    const kiln::Millis ms = *seconds * 1000;
    if (flag == "--keep-logs") options.retention.logs_ms = ms;
    if (flag == "--keep-events") options.retention.events_ms = ms;
    if (flag == "--keep-audit") options.retention.audit_ms = ms;
    if (flag == "--keep-uploads") options.retention.uploads_ms = ms;
  }

  kiln::InitLogging("scheduler", log_level);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);

  kiln::SystemClock clock;
  kiln::transport::Context context;
  auto service = kiln::service::SchedulerService::Create(options, clock, context);
  if (!service.ok()) {
    spdlog::error("cannot start: {}", service.status().ToString());
    return 1;
  }
  std::unique_ptr<kiln::service::HttpServer> http_server;
  if (!http.empty()) {
    auto keys = kiln::service::EnsureSchedulerKeys(options.state_dir);
    if (!keys.ok()) {
      spdlog::error("cannot start: {}", keys.status().ToString());
      return 1;
    }
    auto started = kiln::service::HttpServer::Start(http, {(*service)->endpoint(), keys->public_key});
    if (!started.ok()) {
      spdlog::error("cannot start: {}", started.status().message());
      return 2;
    }
    http_server = std::move(started).value();
    kiln::service::HttpServer* server = http_server.get();
    (*service)->SetMetricsSink(
        [server](std::string text) { server->PublishMetrics(std::move(text)); });
    const std::string endpoint_file = options.state_dir + "/http_endpoint";
    std::ofstream(endpoint_file) << http_server->url() << "\n";
    spdlog::info("HTTP on {} (/metrics, /api/v1)", http_server->url());
  }
  (*service)->Run(g_stop);
  return 0;
}
