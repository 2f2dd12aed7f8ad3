// Test harness: a real kiln-scheduler and kiln-worker on loopback (ephemeral port), in a fresh
// temporary directory, plus helpers to run the real `kiln` CLI against them. Security is on, as
// in production: the worker holds the cluster key, and `Kiln` runs as the admin user "admin"
// (credentials in <dir>/admin.json); `AddUser` makes other users.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol/messages.h"
#include "common/transport/socket.h"
#include "worker/agent/process_group.h"

namespace kiln::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv (no shell), capturing stdout and stderr. Bounded by `timeout_s` (killed after).
CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s = 60);
std::string BinPath(const std::string& name);
// The file's text, or "" when it cannot be read (a log not written yet).
std::string Slurp(const std::string& path);
bool Contains(const std::string& haystack, const std::string& needle);
// The lines of a command's output, without their newlines.
std::vector<std::string> SplitLines(const std::string& text);
// Polls `condition` every 50 ms until it is true or timeout_s passes; returns its last value.
bool WaitFor(const std::function<bool()>& condition, double timeout_s);
// The contents of /proc/PID/NAME ("" when the process is gone).
std::string ProcFile(pid_t pid, const char* name);
// The kiln-train process of `rank` whose command line names `run_dir_part`, or 0. Give the whole
// run dir (the cluster's work dir included): clusters of tests running in parallel number their
// jobs from 1 too.
pid_t RankProcess(const std::string& run_dir_part, int rank);

class LocalCluster {
 public:
  explicit LocalCluster(int slots = 2, double worker_timeout_s = 3.0, bool with_worker = true);
  ~LocalCluster();

  const std::string& dir() const { return dir_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& worker_name() const { return worker_name_; }
  pid_t worker_pid() const;
  pid_t scheduler_pid() const;

  // Starts the scheduler on the state dir; after the first start, on the same address.
  void StartScheduler();
  // Extra kiln-scheduler flags for the next StartScheduler.
  void SetSchedulerArgs(std::vector<std::string> args) { scheduler_args_ = std::move(args); }
  void StopScheduler();  // SIGTERM and wait
  void KillScheduler();  // SIGKILL and reap: no shutdown at all
  void KillWorker();     // SIGKILL to the agent only (its ranks live on) and reap
  void StartWorker();
  void StopWorker();
  // Restarts the worker with these extra kiln-worker flags (e.g. {"--gpus", "2"}) and waits
  // until it is UP again.
  void RestartWorkerWith(std::vector<std::string> extra_args);
  // Starts (or restarts) the worker with these extra flags without waiting for it.
  void StartWorkerWith(std::vector<std::string> extra_args);

  // Runs `kiln` as the admin.
  CommandResult Kiln(std::vector<std::string> args, double timeout_s = 30);
  // Runs `kiln` with the credentials file `credentials`.
  CommandResult KilnWith(const std::string& credentials, std::vector<std::string> args,
                         double timeout_s = 30);
  // Runs `kiln-scheduler --state-dir <state> args...` (the admin's offline commands).
  CommandResult Admin(std::vector<std::string> args, double timeout_s = 30);
  // Creates a user whose jobs run as `unix_user` (root, allowed, unless given); returns the path
  // of their credentials file.
  std::string AddUser(const std::string& name, bool admin = false,
                      const std::string& unix_user = "root");
  std::string state_dir() const { return dir_ + "/state"; }
  // The scheduler's HTTP URL (--http), once it has written STATE_DIR/http_endpoint (waits up to
  // 15 s; throws when it does not come).
  std::string HttpUrl() const;
  std::string server_key() const;
  transport::CurveKeyPair worker_cluster_keys() const;
  std::string admin_token() const;
  // The token in a credentials file AddUser wrote.
  std::string TokenOf(const std::string& credentials) const;
  // Connects `socket` to the scheduler over CURVE: as an admitted worker (the cluster key), or as
  // a client with a fresh key (which then needs a token in each envelope).
  void ConnectSecurely(transport::Socket& socket, bool as_worker) const;
  std::string WriteSpec(const nlohmann::json& spec, const std::string& name = "spec.json");
  int64_t Submit(const nlohmann::json& spec);
  nlohmann::json Show(int64_t job_id);
  // Polls `kiln show` until predicate(job) holds; returns the last view seen.
  nlohmann::json WaitForJob(int64_t job_id, const std::function<bool(const nlohmann::json&)>& pred,
                            double timeout_s);

 private:
  std::string dir_;
  std::string endpoint_;
  std::string worker_name_;
  int slots_;
  double worker_timeout_s_;
  std::vector<std::string> worker_args_;
  std::vector<std::string> scheduler_args_;
  std::unique_ptr<agent::ProcessGroup> scheduler_;
  std::unique_ptr<agent::ProcessGroup> worker_;
};

// A fake worker's register as kiln-worker run by root sends it: the agent's uid and the accounts
// it has (root, which the cluster's users map to by default).
protocol::RegisterWorker AsRootAgent(protocol::RegisterWorker r);

// A small synthetic job: `epochs` epochs of `samples` samples, on `ranks` ranks.
nlohmann::json SyntheticSpec(const std::string& name, int ranks, int epochs, int samples);

}  // namespace kiln::testing
