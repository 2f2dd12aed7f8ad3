#include "scheduler/service/admin_commands.h"

#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/credentials.h"
#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/quantities.h"
#include "common/shell_quote.h"
#include "common/transport/curve.h"
#include "scheduler/core/accounts.h"
#include "scheduler/service/scheduler_service.h"
#include "scheduler/service/store.h"

namespace kiln::service {

namespace {

int Fail(const std::string& message) {
  std::cerr << "kiln-scheduler: " << message << "\n";
  return 1;
}

std::string Time(Millis ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return text;
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& state_dir) {
  KILN_RETURN_IF_ERROR(MakeDirs(state_dir));
  return Store::Open(state_dir + "/kiln.db");
}

// The address to write into a credentials file: the flag, else where the daemon last bound.
std::string SchedulerAddress(const std::string& flag, const std::string& state_dir) {
  if (!flag.empty()) return flag;
  auto bound = ReadFile(state_dir + "/endpoint");
  if (bound.ok() && !bound->empty()) return bound->substr(0, bound->find('\n'));
  return "tcp://127.0.0.1:7070";
}

// The admin's commands are audited as user "admin": whoever can run them holds the state dir.
void AuditAdmin(Store& store, const std::string& action, const std::string& target,
                const std::string& detail) {
  (void)store.AddAudit({0, SystemClock().WallMs(), "admin", action, target, "ok", detail});
}

}  // namespace

AdminCommands::AdminCommands(CLI::App& app) {
  CLI::App* key = app.add_subcommand("key", "the scheduler's CURVE key");
  key_show_ = key->add_subcommand("show", "print the public key clients and workers pin");
  key->require_subcommand(1);

  CLI::App* user = app.add_subcommand("user", "users and their tokens");
  user->require_subcommand(1);
  user_add_ = user->add_subcommand("add", "create a user and print (or save) their token");
  user_token_ = user->add_subcommand("token", "issue a new token for a user (the old one stops "
                                              "working at once)");
  for (CLI::App* c : {user_add_, user_token_}) {
    c->add_option("NAME", name_, "user name")->required();
    c->add_option("--credentials", credentials_,
                  "write a ready credentials file (mode 0600) here instead of printing the token");
    c->add_option("--scheduler", scheduler_, "address written into that file (default: the "
                                             "state dir's endpoint)");
  }
  user_add_->add_flag("--admin", admin_, "may act on every job and administer nodes");
  user_list_ = user->add_subcommand("list", "list users");
  user_remove_ = user->add_subcommand("remove", "remove a user; their token stops working");
  user_remove_->add_option("NAME", name_, "user name")->required();
  user_set_ = user->add_subcommand("set",
                                   "set a user's Unix account and quotas (0 or none: no "
                                   "limit)");
  user_set_->add_option("NAME", name_, "user name")->required();
  for (CLI::App* c : {user_add_, user_set_}) {
    c->add_option("--unix-user", unix_user_,
                  "the Unix account the user's jobs run as on the nodes (default: the user's "
                  "name)");
    c->add_flag("--allow-root", allow_root_,
                "let that account be uid 0 (root); without it such jobs never start");
  }
  user_set_->add_flag("--no-allow-root", no_allow_root_, "take back --allow-root");
  user_set_->add_option("--max-pending", max_pending_, "PENDING jobs at once (more are refused)");
  user_set_->add_option("--max-running-ranks", max_running_ranks_,
                        "ranks of running jobs at once (more wait)");
  user_set_->add_option("--max-gpus", max_gpus_, "GPUs of running jobs at once (more wait)");
  user_set_->add_option("--max-checkpoint-bytes", max_checkpoint_bytes_,
                        "checkpoint storage, e.g. 50GiB (uploads past it are refused)");

  CLI::App* worker = app.add_subcommand("worker", "the worker key allow-list");
  worker->require_subcommand(1);
  worker_allow_ = worker->add_subcommand("allow", "admit a worker's public key");
  worker_allow_->add_option("KEY", key_, "the key kiln-worker printed (Z85, 40 characters)")
      ->required();
  worker_allow_->add_option("--name", name_, "the node that holds it (a note)")->required();
  worker_revoke_ = worker->add_subcommand("revoke", "remove a key (by key or node name)");
  worker_revoke_->add_option("KEY_OR_NAME", key_, "key or node name")->required();
  worker_list_ = worker->add_subcommand("list", "list admitted keys");

  audit_ = app.add_subcommand("audit", "print the audit table: who did what");
  audit_->add_option("--limit", limit_, "newest rows to print")->capture_default_str();
  audit_->add_flag("--json", json_, "print a JSON array");
}

bool AdminCommands::Selected() const {
  for (const CLI::App* c : {key_show_, user_add_, user_token_, user_list_, user_remove_, user_set_,
                            worker_allow_, worker_revoke_, worker_list_, audit_}) {
    if (c->parsed()) return true;
  }
  return false;
}

int AdminCommands::Run(const std::string& state_dir) {
  if (key_show_->parsed()) return KeyShow(state_dir);
  auto opened = OpenStore(state_dir);
  if (!opened.ok()) return Fail(opened.status().message());
  Store& store = **opened;
  if (user_add_->parsed()) return UserAdd(store, state_dir, false);
  if (user_token_->parsed()) return UserAdd(store, state_dir, true);
  if (user_list_->parsed()) return UserList(store);
  if (user_remove_->parsed()) return UserRemove(store);
  if (user_set_->parsed()) return UserSet(store);
  if (worker_allow_->parsed()) return WorkerAllow(store);
  if (worker_revoke_->parsed()) return WorkerRevoke(store);
  if (worker_list_->parsed()) return WorkerList(store, state_dir);
  if (audit_->parsed()) return AuditList(store);
  return Fail("no command");
}

int AdminCommands::KeyShow(const std::string& state_dir) {
  auto keys = EnsureSchedulerKeys(state_dir);
  if (!keys.ok()) return Fail(keys.status().message());
  std::cout << keys->public_key << "\n";
  return 0;
}

int AdminCommands::UserAdd(Store& store, const std::string& state_dir, bool rotate) {
  if (!IsValidName(name_, 64)) {
    return Fail("NAME: must be 1-64 letters, digits, '-', '_' or '.', got \"" + name_ + "\"");
  }
  auto keys = EnsureSchedulerKeys(state_dir);
  if (!keys.ok()) return Fail(keys.status().message());
  auto users = store.ListUsers();
  if (!users.ok()) return Fail(users.status().message());
  const UserRecord* existing = nullptr;
  for (const auto& u : *users) {
    if (u.name == name_) existing = &u;
  }
  if (!rotate && existing != nullptr) {
    return Fail("user " + name_ + " exists; `kiln-scheduler user token " + name_ +
                "` issues a new token");
  }
  if (rotate && existing == nullptr) {
    return Fail("no user " + name_ + "; create it with `kiln-scheduler user add " + name_ + "`");
  }
  const bool admin = rotate ? existing->admin : admin_;
  UserAccount account{unix_user_, allow_root_};
  if (!unix_user_.empty() && !core::IsValidUnixAccountName(unix_user_)) {
    return Fail(BadAccount());
  }
  if (unix_user_.empty() && !rotate && !core::IsValidUnixAccountName(name_)) {
    return Fail("NAME: \"" + name_ +
                "\" is not a Unix account name, so it cannot be the "
                "account the user's jobs run as: give one with --unix-user ACCOUNT");
  }
  if (rotate) account = existing->account;
  const std::string token = NewAccessToken();
  SystemClock clock;
  Status saved =
      store.UpsertUser({name_, admin, AccessTokenDigest(token), clock.WallMs(), {}, account});
  if (!saved.ok()) return Fail(saved.message());
  const std::string address = SchedulerAddress(scheduler_, state_dir);
  const std::string what = rotate ? "new token for " + name_ : "user " + name_ +
                                                                  (admin ? " (admin)" : "");
  const std::string runs_as =
      "unix_user=" + (account.unix_user.empty() ? name_ : account.unix_user) +
      (account.allow_root ? " allow_root" : "");
  AuditAdmin(store, rotate ? "user.token" : "user.add", "user " + name_,
             (admin ? "admin " : "") + runs_as);
  if (!credentials_.empty()) {
    Status written = SaveCredentials(credentials_, {address, keys->public_key, name_, token});
    if (!written.ok()) return Fail(written.message());
    std::cout << what << "; credentials written to " << credentials_ << "\n";
    return 0;
  }
  // The token goes to stdout only (never to a log); the admin hands it over privately.
  std::cout << what << "\n"
            << "token (shown once): " << token << "\n"
            << "the user runs:  "
            << ShellCommand({"kiln", "login", "--scheduler", address, "--server-key",
                             keys->public_key})
            << "\n"
            << "                and pastes the token when asked\n";
  return 0;
}

int AdminCommands::UserList(Store& store) {
  auto users = store.ListUsers();
  if (!users.ok()) return Fail(users.status().message());
  auto limit = [](int64_t n, bool size = false) {
    return n <= 0 ? std::string("-") : size ? FormatSize(n) : std::to_string(n);
  };
  std::printf("%-24s %-6s %-22s %-19s %-8s %-8s %-6s %s\n", "USER", "ADMIN", "UNIX ACCOUNT",
              "TOKEN ISSUED", "PENDING", "RANKS", "GPUS", "CHECKPOINTS");
  for (const auto& u : *users) {
    const std::string account = u.unix_user() + (u.account.allow_root ? " (root ok)" : "");
    std::printf("%-24s %-6s %-22s %-19s %-8s %-8s %-6s %s\n", u.name.c_str(),
                u.admin ? "yes" : "no", account.c_str(), Time(u.created_at).c_str(),
                limit(u.quota.max_pending).c_str(), limit(u.quota.max_running_ranks).c_str(),
                limit(u.quota.max_gpus).c_str(), limit(u.quota.max_checkpoint_bytes, true).c_str());
  }
  return 0;
}

int AdminCommands::UserSet(Store& store) {
  auto users = store.ListUsers();
  if (!users.ok()) return Fail(users.status().message());
  const UserRecord* user = nullptr;
  for (const auto& u : *users) {
    if (u.name == name_) user = &u;
  }
  if (user == nullptr) return Fail("no user " + name_ + " (kiln-scheduler user list)");
  UserQuota quota = user->quota;
  struct Field {
    const char* flag;
    const std::string& text;
    int64_t* value;
    bool size;
  };
  for (const Field& f :
       {Field{"--max-pending", max_pending_, &quota.max_pending, false},
        Field{"--max-running-ranks", max_running_ranks_, &quota.max_running_ranks, false},
        Field{"--max-gpus", max_gpus_, &quota.max_gpus, false},
        Field{"--max-checkpoint-bytes", max_checkpoint_bytes_, &quota.max_checkpoint_bytes,
              true}}) {
    if (f.text.empty()) continue;
    if (f.text == "none" || f.text == "0") {
      *f.value = 0;
      continue;
    }
    std::optional<int64_t> parsed;
    if (f.size) {
      parsed = ParseSize(f.text);
    } else {
      char* end = nullptr;
      const long long n = std::strtoll(f.text.c_str(), &end, 10);
      if (end != f.text.c_str() && *end == '\0') parsed = n;
    }
    if (!parsed || *parsed < 0) {
      return Fail(std::string(f.flag) + ": must be " +
                  (f.size ? "a size such as 50GiB" : "a whole number") +
                  ", 0 or none (no limit), got \"" + f.text + "\"");
    }
    *f.value = *parsed;
  }
  if (allow_root_ && no_allow_root_) return Fail("--allow-root and --no-allow-root: give one");
  UserAccount account = user->account;
  if (!unix_user_.empty()) {
    if (!core::IsValidUnixAccountName(unix_user_)) return Fail(BadAccount());
    account.unix_user = unix_user_ == name_ ? "" : unix_user_;
  }
  if (allow_root_) account.allow_root = true;
  if (no_allow_root_) account.allow_root = false;
  auto saved = store.SetUserQuota(name_, quota);
  if (!saved.ok()) return Fail(saved.status().message());
  auto account_saved = store.SetUserAccount(name_, account);
  if (!account_saved.ok()) return Fail(account_saved.status().message());
  const std::string detail =
      "unix_user=" + (account.unix_user.empty() ? name_ : account.unix_user) +
      (account.allow_root ? " allow_root" : "") +
      " max_pending=" + std::to_string(quota.max_pending) +
      " max_running_ranks=" + std::to_string(quota.max_running_ranks) +
      " max_gpus=" + std::to_string(quota.max_gpus) +
      " max_checkpoint_bytes=" + std::to_string(quota.max_checkpoint_bytes);
  AuditAdmin(store, "user.set", "user " + name_, detail);
  std::cout << "user " << name_ << ": " << detail << " (0: no limit)\n";
  return 0;
}

std::string AdminCommands::BadAccount() const {
  return "--unix-user: must be a Unix account name (1-32 letters, digits, '.', '_' or '-', not "
         "starting with '-' or '.'), got \"" +
         unix_user_ + "\"";
}

int AdminCommands::UserRemove(Store& store) {
  auto removed = store.RemoveUser(name_);
  if (!removed.ok()) return Fail(removed.status().message());
  if (!*removed) return Fail("no user " + name_);
  AuditAdmin(store, "user.remove", "user " + name_, "");
  std::cout << "removed user " << name_ << "; their token no longer works\n";
  return 0;
}

int AdminCommands::WorkerAllow(Store& store) {
  if (!transport::IsCurveKey(key_)) {
    return Fail("KEY: \"" + key_ + "\" is not a CURVE public key (40 Z85 characters, as "
                "kiln-worker prints it at start)");
  }
  SystemClock clock;
  Status saved = store.AllowWorkerKey({key_, name_, clock.WallMs()});
  if (!saved.ok()) return Fail(saved.message());
  AuditAdmin(store, "worker.allow", "node " + name_, key_);
  std::cout << "admitted worker key " << key_ << " (" << name_ << ")\n";
  (void)store.ForgetRevokedWorkerKey(key_);
  return 0;
}

int AdminCommands::WorkerRevoke(Store& store) {
  SystemClock clock;
  auto removed = store.RevokeWorkerKey(key_, clock.WallMs());
  if (!removed.ok()) return Fail(removed.status().message());
  if (*removed == 0) return Fail("no admitted key or node named \"" + key_ + "\"");
  AuditAdmin(store, "worker.revoke", key_, "");
  std::cout << "revoked " << *removed << " key(s); a connected worker holding one is refused "
                                         "within a second\n";
  return 0;
}

int AdminCommands::WorkerList(Store& store, const std::string& state_dir) {
  auto keys = store.ListWorkerKeys();
  if (!keys.ok()) return Fail(keys.status().message());
  std::printf("%-24s %-42s %s\n", "NODE", "KEY", "ADMITTED");
  for (const auto& k : *keys) {
    std::printf("%-24s %-42s %s\n", k.name.c_str(), k.public_key.c_str(),
                Time(k.added_at).c_str());
  }
  auto cluster = transport::LoadKeyPair(state_dir + "/" + kWorkerClusterKeyFile);
  if (cluster.ok()) {
    std::printf("(any worker holding %s/%s, public key %s, is admitted too)\n", state_dir.c_str(),
                kWorkerClusterKeyFile, cluster->public_key.c_str());
  }
  return 0;
}

int AdminCommands::AuditList(Store& store) {
  auto rows = store.ListAudit(std::max<int64_t>(1, limit_));
  if (!rows.ok()) return Fail(rows.status().message());
  if (json_) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : *rows) {
      out.push_back({{"id", a.id}, {"time", a.time}, {"user", a.user}, {"action", a.action},
                     {"target", a.target}, {"outcome", a.outcome}, {"detail", a.detail}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%-19s %-12s %-12s %-14s %-18s %s\n", "TIME", "USER", "ACTION", "TARGET", "OUTCOME",
              "DETAIL");
  for (const auto& a : *rows) {
    std::printf("%-19s %-12s %-12s %-14s %-18s %s\n", Time(a.time).c_str(), a.user.c_str(),
                a.action.c_str(), a.target.c_str(), a.outcome.c_str(), a.detail.c_str());
  }
  return 0;
}

}  // namespace kiln::service
