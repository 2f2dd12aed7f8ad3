// kiln-scheduler: reads flags (and --config FILE) and runs the SchedulerService until
// SIGTERM/SIGINT; SIGHUP reads them again and applies what can change live.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>

#include "common/clock.h"
#include "common/config.h"
#include "common/daemon/metrics_http.h"
#include "common/daemon/systemd.h"
#include "common/daemon/toml_config.h"
#include "common/logging.h"
#include "common/quantities.h"
#include "scheduler/service/admin_commands.h"
#include "scheduler/service/http_server.h"
#include "scheduler/service/scheduler_service.h"

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
void OnSignal(int) { g_stop = true; }
void OnHangUp(int) { g_reload = true; }

// The flags as given (or read from --config), before they are checked.
struct Flags {
  kiln::service::SchedulerOptions options;
  std::string log_level = "info";
  std::string http;
  kiln::service::HttpTls tls;
  double worker_timeout_s = kiln::kDefaultWorkerTimeoutMs / 1000.0;
  double worker_lease_s = kiln::kDefaultWorkerLeaseMs / 1000.0;
  bool no_backfill = false;
  bool single_node = false;
  std::string usage_unit = "ranks";
  std::vector<std::string> weights;
  // Retention: how long what only grows is kept ("30d", "12h", seconds; 0 keeps it forever).
  std::map<std::string, std::string> keep = {{"--keep-logs", "30d"},
                                             {"--keep-events", "90d"},
                                             {"--keep-audit", "365d"},
                                             {"--keep-uploads", "2d"}};
};

void DefineFlags(CLI::App& app, Flags& f) {
  kiln::AddConfigFile(app);
  app.add_option("--listen", f.options.listen,
                 "ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:7070 "
                 "(tcp://127.0.0.1:* picks a free port)")
      ->capture_default_str();
  app.add_option("--state-dir", f.options.state_dir,
                 "directory for the SQLite state and checkpoints")
      ->required();
  app.add_option("--http", f.http,
                 "HOST:PORT for the HTTP server (/: the dashboard; /api/v1: the API, docs/api.md; "
                 "/metrics: Prometheus metrics), e.g. 127.0.0.1:9470; PORT 0 picks a free one "
                 "(written to STATE_DIR/http_endpoint). Keep it on loopback unless the network "
                 "is trusted; off when not given");
  app.add_option("--http-cert", f.tls.certificate_file,
                 "PEM certificate (chain) for the HTTP server: it then serves HTTPS only");
  app.add_option("--http-key", f.tls.key_file, "the --http-cert certificate's PEM private key");
  app.add_option("--worker-timeout", f.worker_timeout_s,
                 "seconds of silence after which a worker is DOWN")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  app.add_option("--worker-lease", f.worker_lease_s,
                 "seconds a worker cut off from the scheduler keeps its running attempts: its "
                 "agent stops them itself before this ends, and only then are they failed and "
                 "placed elsewhere (at least --worker-timeout)")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 86400.0));
  app.add_flag("--private-jobs", f.options.private_jobs,
               "kiln queue shows non-admins only their own jobs (otherwise other users' jobs are "
               "listed without specs, metrics or failure reasons)");
  app.add_flag("--single-node-gangs", f.single_node,
               "place every gang on one node (jobs that ask for several nodes wait)");
  app.add_flag("--no-backfill", f.no_backfill,
               "never start a job ahead of the blocked highest-priority job");
  app.add_option("--fair-share-half-life", f.options.fair_share_half_life_s,
                 "seconds for a user's past usage to count half as much")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 10.0 * 365 * 86400));
  app.add_option("--usage-unit", f.usage_unit,
                 "what fair share counts: ranks (rank-seconds) or gpus (GPU-seconds)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ranks", "gpus"}));
  app.add_option("--user-weight", f.weights,
                 "USER=WEIGHT: a user's fair share (default 1; repeatable), e.g. --user-weight "
                 "alice=2; in a config file a table: [user-weight] alice = 2 (reloaded on SIGHUP)");
  app.add_option("--keep-logs", f.keep["--keep-logs"],
                 "how long a finished job's log lines are kept (0: forever; reloaded on SIGHUP)")
      ->capture_default_str();
  app.add_option("--keep-events", f.keep["--keep-events"],
                 "how long a finished job's events and metrics history are kept (0: forever; "
                 "reloaded on SIGHUP)")
      ->capture_default_str();
  app.add_option("--keep-audit", f.keep["--keep-audit"],
                 "how long audit rows are kept (0: forever; reloaded on SIGHUP)")
      ->capture_default_str();
  app.add_option("--keep-uploads", f.keep["--keep-uploads"],
                 "how long an untouched checkpoint upload is kept before it counts as abandoned "
                 "(0: forever; reloaded on SIGHUP)")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace|debug|info|warn|error (reloaded on SIGHUP)")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
}

// Checks what CLI11 cannot and fills the options; a message naming the flag when one is wrong.
kiln::Result<kiln::service::SchedulerOptions> Resolve(const Flags& f) {
  kiln::service::SchedulerOptions options = f.options;
  options.backfill = !f.no_backfill;
  options.multi_node = !f.single_node;
  options.usage_unit = f.usage_unit == "gpus" ? kiln::core::UsageUnit::kGpuSeconds
                                              : kiln::core::UsageUnit::kRankSeconds;
  for (const auto& w : f.weights) {
    const size_t eq = w.find('=');
    double weight = 0;
    try {
      weight = eq == std::string::npos ? 0 : std::stod(w.substr(eq + 1));
    } catch (const std::exception&) {
    }
    if (eq == 0 || eq == std::string::npos || !(weight > 0)) {
      return kiln::Status::InvalidArgument(
          "--user-weight: expected USER=WEIGHT with WEIGHT > 0, got \"" + w + "\"");
    }
    options.user_weights[w.substr(0, eq)] = weight;
  }
  if (f.tls.certificate_file.empty() != f.tls.key_file.empty()) {
    return kiln::Status::InvalidArgument(
        "--http-cert and --http-key go together: give both (a PEM certificate and its key) or "
        "neither");
  }
  if (!f.tls.certificate_file.empty() && f.http.empty()) {
    return kiln::Status::InvalidArgument("--http-cert: there is no HTTP server without --http");
  }
  if (!f.http.empty()) {
    auto listen = kiln::ParseHostPort("--http", f.http);
    if (!listen.ok()) return listen.status();
  }
  for (const auto& [flag, file] : {std::pair{"--http-cert", f.tls.certificate_file},
                                   std::pair{"--http-key", f.tls.key_file}}) {
    if (!file.empty() && ::access(file.c_str(), R_OK) != 0) {
      return kiln::Status::InvalidArgument(std::string(flag) + ": cannot read " + file +
                                           " as this user (" + std::strerror(errno) + ")");
    }
  }
  options.worker_timeout_ms = static_cast<kiln::Millis>(f.worker_timeout_s * 1000);
  options.worker_lease_ms = static_cast<kiln::Millis>(f.worker_lease_s * 1000);
  if (options.worker_lease_ms < options.worker_timeout_ms) {
    return kiln::Status::InvalidArgument("--worker-lease: " + std::to_string(f.worker_lease_s) +
                                         " s is shorter than --worker-timeout (" +
                                         std::to_string(f.worker_timeout_s) +
                                         " s); give it at least as long");
  }
  for (const auto& [flag, text] : f.keep) {
    auto seconds = text == "0" ? std::optional<int64_t>(0) : kiln::ParseDuration(text);
    if (!seconds || *seconds < 0 || *seconds > 100LL * 365 * 86400) {
      return kiln::Status::InvalidArgument(flag +
                                           ": expected a duration such as 30d, 12h or 3600 "
                                           "(0 keeps forever), got \"" +
                                           text + "\"");
    }
    const kiln::Millis ms = *seconds * 1000;
    if (flag == "--keep-logs") options.retention.logs_ms = ms;
    if (flag == "--keep-events") options.retention.events_ms = ms;
    if (flag == "--keep-audit") options.retention.audit_ms = ms;
    if (flag == "--keep-uploads") options.retention.uploads_ms = ms;
  }
  return options;
}

// What a reload found: the options, and the flags the daemon's main applies itself.
struct Reloaded {
  kiln::service::SchedulerOptions options;
  std::string log_level;
  std::string http;
  kiln::service::HttpTls tls;
};

// Parses argv again (the config file is read again), for SIGHUP.
std::optional<Reloaded> Reread(int argc, char** argv) {
  CLI::App app;
  Flags flags;
  DefineFlags(app, flags);
  app.allow_extras();  // admin subcommands are not defined here; the daemon has none
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    spdlog::error("reload refused, nothing changed: {}", e.what());
    return std::nullopt;
  }
  auto options = Resolve(flags);
  if (!options.ok()) {
    spdlog::error("reload refused, nothing changed: {}", options.status().message());
    return std::nullopt;
  }
  return Reloaded{*options, flags.log_level, flags.http, flags.tls};
}

}  // namespace

int main(int argc, char** argv) {
  // First: a SIGHUP (systemctl reload) before the loop runs must not kill the daemon.
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGHUP, OnHangUp);
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{
      "kiln-scheduler: queues training jobs durably and places them on workers.\n"
      "With no command it runs the daemon; check validates the settings; key, user, worker "
      "and audit are the admin's offline commands on the same --state-dir."};
  Flags flags;
  DefineFlags(app, flags);
  app.fallthrough();  // --state-dir may come after an admin command too
  app.require_subcommand(0, 1);
  CLI::App* check = app.add_subcommand(
      "check", "validate the flags and --config file, print the settings, and exit");
  kiln::service::AdminCommands admin(app);
  CLI11_PARSE(app, argc, argv);
  if (admin.Selected()) return admin.Run(flags.options.state_dir);
  auto resolved = Resolve(flags);
  if (!resolved.ok()) {
    std::fprintf(stderr, "kiln-scheduler: %s\n", resolved.status().message().c_str());
    return 2;
  }
  kiln::service::SchedulerOptions options = *resolved;
  if (check->parsed()) {
    std::printf("kiln-scheduler: settings are valid\n%s", kiln::EffectiveSettings(app).c_str());
    return 0;
  }

  kiln::InitDaemonLogging("scheduler", flags.log_level);

  kiln::SystemClock clock;
  kiln::transport::Context context;
  auto service = kiln::service::SchedulerService::Create(options, clock, context);
  if (!service.ok()) {
    spdlog::error("cannot start: {}", service.status().ToString());
    return 1;
  }
  std::unique_ptr<kiln::service::HttpServer> http_server;
  if (!flags.http.empty()) {
    auto keys = kiln::service::EnsureSchedulerKeys(options.state_dir);
    if (!keys.ok()) {
      spdlog::error("cannot start: {}", keys.status().ToString());
      return 1;
    }
    auto started = kiln::service::HttpServer::Start(
        flags.http, {(*service)->endpoint(), keys->public_key}, flags.tls);
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
    spdlog::info("HTTP on {} (/, /api/v1, /metrics)", http_server->url());
  }
  kiln::NotifySystemd("READY=1\nSTATUS=serving on " + (*service)->endpoint());
  std::string log_level = flags.log_level;
  (*service)->Run(g_stop, [&] {
    if (!g_reload.exchange(false)) return;
    kiln::NotifySystemd("RELOADING=1");
    spdlog::info("SIGHUP: reading the settings again");
    if (auto fresh = Reread(argc, argv)) {
      if (fresh->http != flags.http || fresh->tls.certificate_file != flags.tls.certificate_file ||
          fresh->tls.key_file != flags.tls.key_file) {
        spdlog::warn("reload: http, http-cert or http-key changed, but take effect only when the "
                     "scheduler restarts");
      }
      if (fresh->log_level != log_level) {
        spdlog::info("reload: log-level {} -> {}", log_level, fresh->log_level);
        log_level = fresh->log_level;
        spdlog::set_level(spdlog::level::from_str(log_level));
      }
      (*service)->ApplySettings(fresh->options);
    }
    kiln::NotifySystemd("READY=1");
  });
  kiln::NotifySystemd("STOPPING=1");
  return 0;
}
