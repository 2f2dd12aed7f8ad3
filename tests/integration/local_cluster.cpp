#include "tests/integration/local_cluster.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/file_util.h"

namespace kiln::testing {

using nlohmann::json;

namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

std::string Slurp(const std::string& path) {
  auto text = ReadFile(path);
  return text.ok() ? *text : "";
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ' a' ' b' for a shell command line (the tests' own flags: no quotes inside).
static std::string ExtraArgs(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += " '" + a + "'";
  return out;
}

std::string BinPath(const std::string& name) { return std::string(KILN_BIN_DIR) + "/" + name; }

bool WaitFor(const std::function<bool()>& condition, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    SleepMs(50);
  }
  return condition();
}

CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s) {
  static std::atomic<int> counter{0};
  const std::string base = "/tmp/kiln-cmd-" + std::to_string(::getpid()) + "-" +
                           std::to_string(counter++);
  std::fflush(nullptr);  // or the child's freopen flushes our buffered output a second time
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen((base + ".out").c_str(), "w", stdout);
    FILE* err = std::freopen((base + ".err").c_str(), "w", stderr);
    (void)out;
    (void)err;
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  CommandResult result;
  int status = 0;
  bool done = WaitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout_s);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    result.err = "command timed out after " + std::to_string(timeout_s) + " s\n";
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = Slurp(base + ".out");
  result.err += Slurp(base + ".err");
  ::unlink((base + ".out").c_str());
  ::unlink((base + ".err").c_str());
  return result;
}

std::string ProcFile(pid_t pid, const char* name) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + name, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

pid_t RankProcess(const std::string& run_dir_part, int rank) {
  pid_t found = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    const std::string cmdline = ProcFile(static_cast<pid_t>(pid), "cmdline");
    if (cmdline.find("kiln-train") == std::string::npos ||
        cmdline.find(run_dir_part) == std::string::npos) {
      continue;
    }
    const std::string environ = ProcFile(static_cast<pid_t>(pid), "environ");
    if (environ.find(std::string("OMPI_COMM_WORLD_RANK=") + std::to_string(rank) + '\0') !=
        std::string::npos) {
      found = static_cast<pid_t>(pid);
    }
  }
  ::closedir(proc);
  return found;
}

protocol::RegisterWorker AsRootAgent(protocol::RegisterWorker r) {
  r.agent_uid = 0;
  r.agent_account = "root";
  r.accounts = std::vector<protocol::AccountUid>{{"root", 0}};
  return r;
}

json SyntheticSpec(const std::string& name, int ranks, int epochs, int samples) {
  return {{"name", name},
          {"resources", {{"ranks", ranks}}},
          {"model", {{"type", "mlp"}, {"hidden", {32}}, {"activation", "relu"}}},
          {"data", {{"type", "synthetic"}, {"samples", samples}, {"test_samples", 256},
                    {"features", 20}, {"classes", 3}, {"seed", 3}}},
          {"train", {{"epochs", epochs}, {"batch_size", 16}, {"loss", "cross_entropy"},
                     {"optimizer", {{"type", "adam"}, {"lr", 0.01}}}, {"seed", 5}}},
          {"checkpoint", {{"every_steps", 20}, {"keep_last", 2}}},
          {"max_retries", 0}};
}

LocalCluster::LocalCluster(int slots, double worker_timeout_s, bool with_worker)
    : slots_(slots), worker_timeout_s_(worker_timeout_s) {
  char pattern[] = "/tmp/kiln-it-XXXXXX";
  dir_ = ::mkdtemp(pattern);
  static std::atomic<int> counter{0};
  worker_name_ = "w" + std::to_string(::getpid()) + "x" + std::to_string(counter++);
  StartScheduler();
  if (!with_worker) return;
  StartWorker();
  bool up = WaitFor([&] {
    auto r = Kiln({"nodes", "--json"}, 10);
    if (r.exit_code != 0) return false;
    json nodes = json::parse(r.out, nullptr, false);
    return nodes.is_array() && !nodes.empty() && nodes[0]["state"] == "UP";
  }, 20);
  if (!up) throw std::runtime_error("worker did not register; see " + dir_);
}

LocalCluster::~LocalCluster() {
  StopWorker();
  StopScheduler();
  agent::KillTagged(agent::AnyAttemptOfNode(worker_name_), SIGKILL);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

pid_t LocalCluster::worker_pid() const { return worker_ ? worker_->pid() : -1; }
pid_t LocalCluster::scheduler_pid() const { return scheduler_ ? scheduler_->pid() : -1; }

namespace {
bool HasFlag(const std::vector<std::string>& args, const std::string& flag) {
  return std::find(args.begin(), args.end(), flag) != args.end();
}
}  // namespace

void LocalCluster::StartScheduler() {
  std::filesystem::remove(dir_ + "/state/endpoint");
  std::filesystem::remove(dir_ + "/state/http_endpoint");
  const std::string listen = endpoint_.empty() ? "tcp://127.0.0.1:*" : endpoint_;
  const std::string cmd = "exec " + BinPath("kiln-scheduler") +
                          " --listen '" + listen + "' --state-dir " + dir_ + "/state" +
                          " --worker-timeout " + std::to_string(worker_timeout_s_) +
                          // Tests that kill workers fail over in seconds, not the default 30.
                          (HasFlag(scheduler_args_, "--worker-lease")
                               ? ""
                               : " --worker-lease " + std::to_string(5 * worker_timeout_s_)) +
                          ExtraArgs(scheduler_args_) + " >>" + dir_ + "/scheduler.log 2>&1";
  auto group = agent::ProcessGroup::Start({"sh", "-c", cmd}, {}, dir_, "sched-" + worker_name_);
  if (!group.ok()) throw std::runtime_error(group.status().ToString());
  scheduler_ = std::make_unique<agent::ProcessGroup>(std::move(group).value());
  bool ready = WaitFor([&] { return ::access((dir_ + "/state/endpoint").c_str(), R_OK) == 0; },
                       10);
  if (!ready) throw std::runtime_error("scheduler did not start; see " + dir_ + "/scheduler.log");
  std::string ep = Slurp(dir_ + "/state/endpoint");
  endpoint_ = ep.substr(0, ep.find('\n'));
  if (::access((dir_ + "/admin.json").c_str(), R_OK) != 0) AddUser("admin", true);
}

std::string LocalCluster::HttpUrl() const {
  std::string url;
  WaitFor(
      [&] {
        url = ::access((state_dir() + "/http_endpoint").c_str(), R_OK) == 0
                  ? Slurp(state_dir() + "/http_endpoint")
                  : "";
        return url.find('\n') != std::string::npos;
      },
      15);
  if (url.find('\n') == std::string::npos) {
    throw std::runtime_error("the scheduler wrote no http_endpoint; see " + dir_ +
                             "/scheduler.log");
  }
  return url.substr(0, url.find('\n'));
}

std::string LocalCluster::AddUser(const std::string& name, bool admin,
                                  const std::string& unix_user) {
  const std::string path = dir_ + "/" + name + ".json";
  std::vector<std::string> args = {"user",        "add",     name,          "--credentials", path,
                                   "--scheduler", endpoint_, "--unix-user", unix_user};
  if (admin) args.push_back("--admin");
  if (unix_user == "root") args.push_back("--allow-root");
  auto r = Admin(args);
  if (r.exit_code != 0) throw std::runtime_error("user add " + name + " failed: " + r.err);
  return path;
}

CommandResult LocalCluster::Admin(std::vector<std::string> args, double timeout_s) {
  args.insert(args.begin(), {BinPath("kiln-scheduler"), "--state-dir", state_dir()});
  return RunCommand(args, timeout_s);
}

std::string LocalCluster::server_key() const {
  std::string key = Slurp(state_dir() + "/server.pub");
  return key.substr(0, key.find('\n'));
}

transport::CurveKeyPair LocalCluster::worker_cluster_keys() const {
  auto keys = transport::LoadKeyPair(state_dir() + "/worker-cluster.key");
  if (!keys.ok()) throw std::runtime_error(keys.status().ToString());
  return *keys;
}

std::string LocalCluster::admin_token() const { return TokenOf(dir_ + "/admin.json"); }

std::string LocalCluster::TokenOf(const std::string& credentials) const {
  json j = json::parse(Slurp(credentials), nullptr, false);
  return j.is_object() ? j.value("token", "") : "";
}

void LocalCluster::ConnectSecurely(transport::Socket& socket, bool as_worker) const {
  auto own = as_worker ? worker_cluster_keys() : *transport::NewCurveKeyPair();
  if (!socket.MakeCurveClient(server_key(), own).ok() || !socket.Connect(endpoint_).ok()) {
    throw std::runtime_error("cannot connect to " + endpoint_);
  }
}

void LocalCluster::StopScheduler() {
  if (!scheduler_) return;
  scheduler_->SignalGroup(SIGTERM);
  if (!WaitFor([&] { return scheduler_->TryReap().has_value(); }, 10)) {
    scheduler_->SignalGroup(SIGKILL);
    WaitFor([&] { return scheduler_->TryReap().has_value(); }, 5);
  }
  scheduler_.reset();
}

void LocalCluster::KillScheduler() {
  if (!scheduler_) return;
  scheduler_->SignalGroup(SIGKILL);
  WaitFor([&] { return scheduler_->TryReap().has_value(); }, 5);
  scheduler_.reset();
}

void LocalCluster::KillWorker() {
  if (!worker_) return;
  ::kill(worker_->pid(), SIGKILL);
  WaitFor([&] { return worker_->TryReap().has_value(); }, 5);
  worker_.reset();
}

void LocalCluster::StartWorker() {
  // The worker addresses the scheduler by the endpoint it had when the worker started; a
  // restarted scheduler gets a new port, so tests that restart it restart the worker too.
  const std::string cmd = "exec " + BinPath("kiln-worker") + " --scheduler " + endpoint_ +
                          " --name " + worker_name_ + " --slots " + std::to_string(slots_) +
                          " --work-dir " + dir_ + "/work --server-key " + state_dir() +
                          "/server.pub";
  std::string extra;
  bool grace_given = false, key_given = false, pinning = false;
  for (const auto& a : worker_args_) {
    if (a == "--pin-cpus") {  // the test's own: the agent pins by default
      pinning = true;
      continue;
    }
    extra += " '" + a + "'";
    grace_given = grace_given || a == "--kill-grace";
    key_given = key_given || a == "--key-file";
  }
  // Tests run many clusters on one machine at once: pinned, every agent's first attempt would
  // sit on the same first CPUs (the suite took 562 s instead of 363 s).
  if (!pinning) extra += " --no-pin-cpus";
  if (!grace_given) extra += " --kill-grace 2";
  if (!key_given) extra += " --key-file " + state_dir() + "/worker-cluster.key";
  const std::string full = cmd + extra + " >>" + dir_ + "/worker.log 2>&1";
  auto group = agent::ProcessGroup::Start({"sh", "-c", full}, {}, dir_, "agent-" + worker_name_);
  if (!group.ok()) throw std::runtime_error(group.status().ToString());
  worker_ = std::make_unique<agent::ProcessGroup>(std::move(group).value());
}

void LocalCluster::RestartWorkerWith(std::vector<std::string> extra_args) {
  StopWorker();
  worker_args_ = std::move(extra_args);
  const std::string before = Kiln({"nodes", "--json"}, 10).out;
  StartWorker();
  WaitFor([&] {
    auto r = Kiln({"nodes", "--json"}, 10);
    json nodes = json::parse(r.out, nullptr, false);
    return r.exit_code == 0 && r.out != before && nodes.is_array() && !nodes.empty() &&
           nodes[0]["state"] == "UP";
  }, 20);
}

void LocalCluster::StartWorkerWith(std::vector<std::string> extra_args) {
  StopWorker();
  worker_args_ = std::move(extra_args);
  StartWorker();
}

void LocalCluster::StopWorker() {
  if (!worker_) return;
  ::kill(worker_->pid(), SIGCONT);
  ::kill(worker_->pid(), SIGTERM);
  if (!WaitFor([&] { return worker_->TryReap().has_value(); }, 15)) {
    worker_->SignalGroup(SIGKILL);
    WaitFor([&] { return worker_->TryReap().has_value(); }, 5);
  }
  worker_.reset();
}

CommandResult LocalCluster::Kiln(std::vector<std::string> args, double timeout_s) {
  return KilnWith(dir_ + "/admin.json", std::move(args), timeout_s);
}

CommandResult LocalCluster::KilnWith(const std::string& credentials, std::vector<std::string> args,
                                     double timeout_s) {
  args.insert(args.begin(),
              {BinPath("kiln"), "--scheduler", endpoint_, "--credentials", credentials});
  return RunCommand(args, timeout_s);
}

std::string LocalCluster::WriteSpec(const json& spec, const std::string& name) {
  const std::string path = dir_ + "/" + name;
  std::ofstream(path) << spec.dump(2);
  return path;
}

int64_t LocalCluster::Submit(const json& spec) {
  auto r = Kiln({"submit", WriteSpec(spec)});
  if (r.exit_code != 0) throw std::runtime_error("submit failed: " + r.err);
  return std::stoll(r.out);
}

json LocalCluster::Show(int64_t job_id) {
  auto r = Kiln({"show", std::to_string(job_id), "--json"});
  if (r.exit_code != 0) return json::object();
  json view = json::parse(r.out, nullptr, false);
  return view.is_discarded() ? json::object() : view;
}

json LocalCluster::WaitForJob(int64_t job_id, const std::function<bool(const json&)>& pred,
                              double timeout_s) {
  json last;
  WaitFor([&] {
    last = Show(job_id);
    return !last.empty() && pred(last);
  }, timeout_s);
  return last;
}

}  // namespace kiln::testing
