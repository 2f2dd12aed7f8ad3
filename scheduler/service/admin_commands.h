// `kiln-scheduler [--state-dir DIR] key|user|worker|audit ...`: the admin's offline commands. They
// open the state dir's database directly (SQLite WAL lets them run beside a live daemon, which
// sees their changes on its next lookup) and never touch the network.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

namespace kiln::service {

class Store;

class AdminCommands {
 public:
  // Declares the subcommands on `app`.
  explicit AdminCommands(CLI::App& app);
  // True when the command line named one of them (otherwise the daemon runs).
  bool Selected() const;
  // Runs the selected command; returns the process exit code.
  int Run(const std::string& state_dir);

 private:
  // Every command but `key show` works on the state dir's database, opened once by Run.
  int KeyShow(const std::string& state_dir);
  int UserAdd(Store& store, const std::string& state_dir, bool rotate);
  int UserList(Store& store);
  int UserRemove(Store& store);
  int UserSet(Store& store);
  int WorkerAllow(Store& store);
  int WorkerRevoke(Store& store);
  int WorkerList(Store& store, const std::string& state_dir);
  int AuditList(Store& store);
  std::string BadAccount() const;  // the error for an invalid --unix-user

  CLI::App* key_show_ = nullptr;
  CLI::App* user_add_ = nullptr;
  CLI::App* user_token_ = nullptr;
  CLI::App* user_list_ = nullptr;
  CLI::App* user_remove_ = nullptr;
  CLI::App* user_set_ = nullptr;
  CLI::App* worker_allow_ = nullptr;
  CLI::App* worker_revoke_ = nullptr;
  CLI::App* worker_list_ = nullptr;
  CLI::App* audit_ = nullptr;

  std::string name_;
  std::string key_;
  bool admin_ = false;
  std::string credentials_;  // where to write the new user's credentials file
  std::string scheduler_;    // the address written into it
  int64_t limit_ = 50;
  // `user set`: each quota as given ("" not given; "0" or "none" removes the limit).
  std::string max_pending_, max_running_ranks_, max_gpus_, max_checkpoint_bytes_;
  // `user add` and `user set`: the Unix account jobs run as, and the opt-in to uid 0.
  std::string unix_user_;
  bool allow_root_ = false;
  bool no_allow_root_ = false;
  bool json_ = false;
};

}  // namespace kiln::service
