// kiln-worker: parses flags and runs the node agent until SIGTERM/SIGINT.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "common/config.h"
#include "common/daemon/metrics_http.h"
#include "common/daemon/systemd.h"
#include "common/daemon/toml_config.h"
#include "common/logging.h"
#include "common/quantities.h"
#include "common/transport/curve.h"
#include "worker/agent/agent.h"
#include "worker/agent/cgroup.h"

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
void OnSignal(int) { g_stop = true; }
void OnHangUp(int) { g_reload = true; }

// SIGHUP: the log level is what an agent changes live; it is read again from the same flags and
// --config file, on a thread of its own (spdlog's level is safe to set from any thread).
void WatchReloads(int argc, char** argv, std::string log_level) {
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!g_reload.exchange(false)) continue;
    kiln::NotifySystemd("RELOADING=1");
    CLI::App app;
    kiln::AddConfigFile(app);
    std::string fresh = "info";
    app.add_option("--log-level", fresh)
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
    app.allow_extras();
    app.allow_config_extras(CLI::config_extras_mode::ignore);
    try {
      app.parse(argc, argv);
      if (fresh != log_level) {
        spdlog::info("reload: log-level {} -> {}", log_level, fresh);
        spdlog::set_level(spdlog::level::from_str(fresh));
        log_level = fresh;
      } else {
        spdlog::info(
            "reload: nothing that an agent changes live changed (the log level); "
            "other settings take effect when it restarts");
      }
    } catch (const CLI::ParseError& e) {
      spdlog::error("reload refused, nothing changed: {}", e.what());
    }
    kiln::NotifySystemd("READY=1");
  }
}

std::string BesideThisExecutable(const std::string& name) {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return name;
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / name).string();
}
}  // namespace

int main(int argc, char** argv) {
  // First: a SIGHUP (systemctl reload) before the loop runs must not kill the agent.
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGHUP, OnHangUp);
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"kiln-worker: runs the ranks of kiln jobs on this node"};
  kiln::AddConfigFile(app);
  kiln::agent::AgentOptions options;
  std::string scheduler, log_level = "info";
  double kill_grace_s = 10.0;
  options.run.trainer_path = BesideThisExecutable("kiln-train");
  options.run.rsh_path = BesideThisExecutable("kiln-rsh");
  options.run.serve_path = BesideThisExecutable("kiln-serve");
  app.add_option("--scheduler", scheduler,
                 std::string("scheduler address (default: $") + kiln::kSchedulerEnvVar + " or " +
                     kiln::kDefaultSchedulerAddress + ")");
  app.add_option("--name", options.name, "node name, unique in the cluster")->required();
  std::string server_key, key_file;
  app.add_option("--server-key", server_key,
                 "the scheduler's public key, or a file holding it (its state dir's server.pub); "
                 "default $KILN_SERVER_KEY");
  app.add_option("--key-file", key_file,
                 "this worker's keypair: the cluster's worker-cluster.key, or its own (created "
                 "on first start; admit it with kiln-scheduler worker allow). "
                 "Default: WORK_DIR/worker.key");
  app.add_option("--slots", options.slots, "ranks this node runs at once")
      ->required()
      ->check(CLI::Range(1, 4096));
  app.add_option("--gpus", options.gpus, "GPUs to offer (default: detect through CUDA)")
      ->check(CLI::Range(0, 64));
  app.add_option("--address", options.address,
                 "this node's address for the other nodes of a multi-node job (mpirun's hostfile "
                 "and the launch socket)")
      ->capture_default_str();
  app.add_option("--label", options.labels,
                 "a label jobs can ask for in resources.labels (repeatable), e.g. --label nvme");
  app.add_option("--work-dir", options.run.work_dir, "directory for job run directories")
      ->required();
  app.add_option("--trainer", options.run.trainer_path, "path of kiln-train")->capture_default_str();
  app.add_option("--server", options.run.serve_path, "path of kiln-serve (a service's replicas)")
      ->capture_default_str();
  app.add_option("--mpirun", options.run.mpirun_path, "path of mpirun")->capture_default_str();
  app.add_option("--kill-grace", kill_grace_s, "seconds between SIGTERM and SIGKILL")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  std::string keep_run_dirs = "1d";
  app.add_option("--keep-run-dirs", keep_run_dirs,
                 "how long the run dir of an attempt that ended is kept (output log, local "
                 "checkpoints), e.g. 12h, 7d; 0 keeps them")
      ->capture_default_str();
  bool no_pin_cpus = false;
  app.add_flag("--no-pin-cpus", no_pin_cpus,
               "let ranks float over every CPU instead of pinning each single-node attempt's "
               "ranks to CPUs of their own (for several agents on one machine)");
  std::string cgroup;
  app.add_option("--cgroup", cgroup,
                 "a cgroup v2 folder delegated to the agent (or \"self\": its own, as systemd's "
                 "Delegate=yes gives it): each attempt gets a child cgroup whose memory.max is its "
                 "ranks' memory_per_rank; without it the agent's watchdog alone enforces memory");
  std::string http;
  app.add_option("--http", http,
                 "HOST:PORT for Prometheus metrics at /metrics (running attempts, each job's "
                 "samples/s and memory, GPU use), e.g. 127.0.0.1:9471; PORT 0 picks a free one "
                 "(written to WORK_DIR/http_endpoint); off when not given");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (reloaded on SIGHUP)")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.require_subcommand(0, 1);
  CLI::App* check = app.add_subcommand(
      "check", "validate the flags and --config file, print the settings, and exit");
  CLI11_PARSE(app, argc, argv);
  auto keep_s = keep_run_dirs == "0" ? std::optional<int64_t>(0) : kiln::ParseDuration(keep_run_dirs);
  if (!keep_s || *keep_s > 100LL * 365 * 86400) {
    std::fprintf(stderr, "kiln-worker: --keep-run-dirs: expected a duration such as 12h, 7d or "
                         "3600 (0 keeps them), got \"%s\"\n", keep_run_dirs.c_str());
    return 2;
  }
  options.keep_run_dirs_ms = *keep_s * 1000;
  options.pin_cpus = !no_pin_cpus;
  options.scheduler = kiln::ResolveSchedulerAddress(scheduler);
  options.run.node_name = options.name;
  options.run.work_dir = std::filesystem::absolute(options.run.work_dir).string();
  options.run.address = options.address;
  options.run.kill_grace_ms = static_cast<kiln::Millis>(kill_grace_s * 1000);
  kiln::InitDaemonLogging("worker", log_level);
  std::optional<kiln::agent::DelegatedCgroup> delegated;
  if (!cgroup.empty() && ::geteuid() != 0) {
    spdlog::error(
        "cannot start: --cgroup needs the agent to run as root: an agent that is not "
        "root runs jobs as its own account, and they could lift their own limits");
    return 2;
  }
  if (server_key.empty()) {
    const char* env = std::getenv("KILN_SERVER_KEY");
    server_key = env != nullptr ? env : "";
  }
  if (server_key.empty()) {
    spdlog::error("cannot start: --server-key is required: pass the scheduler's public key "
                  "(kiln-scheduler key show) or the path of its state dir's server.pub");
    return 2;
  }
  auto resolved = kiln::transport::ResolvePublicKey(server_key);
  if (!resolved.ok()) {
    spdlog::error("cannot start: --server-key: {}", resolved.status().message());
    return 2;
  }
  options.server_key = *resolved;
  if (!http.empty()) {
    auto listen = kiln::ParseHostPort("--http", http);
    if (!listen.ok()) {
      spdlog::error("cannot start: {}", listen.status().message());
      return 2;
    }
  }
  // `check` stops here: what follows changes the machine (joins a cgroup, makes a key file).
  if (check->parsed()) {
    std::printf("kiln-worker: settings are valid\n%s", kiln::EffectiveSettings(app).c_str());
    return 0;
  }
  if (!cgroup.empty()) {
    auto opened = kiln::agent::DelegatedCgroup::Open(cgroup);
    if (!opened.ok()) {
      spdlog::error("cannot start: {}", opened.status().message());
      return 2;
    }
    delegated.emplace(std::move(opened).value());
    options.run.cgroup = &*delegated;
    spdlog::info("attempts run in cgroups under {} (memory.max from memory_per_rank)",
                 delegated->root());
  }
  if (key_file.empty()) key_file = options.run.work_dir + "/worker.key";
  bool created = false;
  auto keys = kiln::transport::LoadOrCreateKeyPair(key_file, &created);
  if (!keys.ok()) {
    spdlog::error("cannot start: --key-file: {}", keys.status().message());
    return 2;
  }
  options.keys = *keys;
  spdlog::info("worker key {} ({}{}); unless it is the cluster key, admit it on the scheduler "
               "host with: {}",
               keys->public_key, key_file, created ? ", created now" : "",
               kiln::agent::AllowCommand(keys->public_key, options.name));

  kiln::SystemClock clock;
  kiln::transport::Context context;
  auto agent = kiln::agent::Agent::Create(options, clock, context);
  if (!agent.ok()) {
    spdlog::error("cannot start: {}", agent.status().ToString());
    return 1;
  }
  std::unique_ptr<kiln::MetricsHttpServer> metrics_server;
  if (!http.empty()) {
    auto started = kiln::MetricsHttpServer::Start("--http", http);
    if (!started.ok()) {
      spdlog::error("cannot start: {}", started.status().message());
      return 2;
    }
    metrics_server = std::move(started).value();
    kiln::MetricsHttpServer* server = metrics_server.get();
    (*agent)->SetMetricsSink([server](std::string text) { server->Publish(std::move(text)); });
    std::ofstream(options.run.work_dir + "/http_endpoint") << server->url() << "\n";
    spdlog::info("metrics on {}/metrics", server->url());
  }
  std::thread reloads(WatchReloads, argc, argv, log_level);
  kiln::NotifySystemd("READY=1\nSTATUS=node " + options.name + ", scheduler " + options.scheduler);
  (*agent)->Run(g_stop);
  g_stop = true;
  reloads.join();
  kiln::NotifySystemd("STOPPING=1");
  return 0;
}
