// A newcomer's first hour with the CLI and the admin commands (issue 19): every command kiln
// prints for a person to run pastes into bash and works, and the CLI says what it does.
#include <catch2/catch.hpp>

#include <chrono>
#include <regex>

#include "common/file_util.h"
#include "common/shell_quote.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::BinPath;
using kiln::testing::CommandResult;
using kiln::testing::Slurp;
using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::RunCommand;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

// The rest of the first line of `text` that follows `marker` ("" if none).
std::string After(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return "";
  const size_t start = at + marker.size();
  return text.substr(start, text.find('\n', start) - start);
}

// Runs `script` in bash with kiln's binaries first on PATH.
CommandResult Bash(const std::string& script, double timeout_s = 30) {
  return RunCommand({"bash", "-c", "export PATH=" + std::string(KILN_BIN_DIR) + ":$PATH; " + script},
                    timeout_s);
}

}  // namespace

TEST_CASE("the login command that user add prints pastes into bash and logs the user in") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  auto added = cluster.Admin({"user", "add", "bob", "--scheduler", cluster.endpoint()});
  REQUIRE(added.exit_code == 0);
  const std::string hint = After(added.out, "the user runs:  ");
  const std::string token = After(added.out, "token (shown once): ");
  INFO(added.out);
  REQUIRE(hint.rfind("kiln login --scheduler ", 0) == 0);
  REQUIRE(Bash("bash -n -c " + kiln::ShellQuote(hint)).exit_code == 0);

  const std::string home = cluster.dir() + "/home-bob";
  auto login = Bash("export HOME=" + home + "; printf '%s\\n' " + token + " | " + hint);
  INFO(login.err);
  REQUIRE(login.exit_code == 0);
  CHECK(Contains(login.out, "logged in to " + cluster.endpoint() + " as bob"));
  auto whoami = Bash("export HOME=" + home + "; kiln whoami --json");
  REQUIRE(whoami.exit_code == 0);
  json me = json::parse(whoami.out);
  CHECK(me["user"] == "bob");
  CHECK(me["admin"] == false);
  CHECK(me["scheduler"] == cluster.endpoint());

  auto help = RunCommand({BinPath("kiln"), "login", "--help"});
  CHECK(Contains(help.out, "--scheduler"));
}

TEST_CASE("a worker's refusal prints the admin command that admits it, which pastes and works, and "
          "a revoked worker is told its key was revoked") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  cluster.StartWorkerWith({"--key-file", cluster.dir() + "/own-worker.key"});
  const std::string marker = "to admit it again, on the scheduler host run: ";
  // The worker hears the command with STATE_DIR (a refusal goes to anyone who knows the server
  // key); the scheduler's log, which the admin reads, names the state dir.
  REQUIRE(WaitFor([&] {
    return Contains(After(Slurp(cluster.dir() + "/worker.log"), "on the scheduler host run: "),
                    "kiln-scheduler --state-dir STATE_DIR worker allow --name NODE -- '");
  }, 20));
  std::string command = After(Slurp(cluster.dir() + "/scheduler.log"), "admit it with: ");
  // "kiln-scheduler --state-dir DIR worker allow --name NODE -- 'KEY'" (the key may start
  // with '-': it comes after "--")
  REQUIRE(command.find(" NODE -- '") != std::string::npos);
  command.replace(command.find(" NODE -- '") + 1, 4, cluster.worker_name());
  INFO(command);
  REQUIRE(Contains(command, "kiln-scheduler --state-dir " + cluster.state_dir() + " worker allow"));
  auto allowed = Bash(command);
  INFO(allowed.err);
  REQUIRE(allowed.exit_code == 0);
  auto node_state = [&] {
    auto view = json::parse(cluster.Kiln({"nodes", "--json"}).out, nullptr, false);
    return view.is_array() && !view.empty() ? view[0]["state"].get<std::string>() : "";
  };
  CHECK(WaitFor([&] { return node_state() == "UP"; }, 15));
  // The worker's own start-up line names the command too, quoted.
  const std::string own = After(Slurp(cluster.dir() + "/worker.log"), "admit it on the scheduler "
                                                                         "host with: ");
  REQUIRE(Contains(own, "kiln-scheduler --state-dir STATE_DIR worker allow --name " +
                            cluster.worker_name() + " -- '"));
  CHECK(Bash("bash -n -c " + kiln::ShellQuote(own)).exit_code == 0);

  REQUIRE(cluster.Admin({"worker", "revoke", cluster.worker_name()}).exit_code == 0);
  CHECK(WaitFor([&] {
    return Contains(Slurp(cluster.dir() + "/worker.log"), "an admin revoked its key");
  }, 20));
  CHECK(Contains(Slurp(cluster.dir() + "/worker.log"), marker));
}

TEST_CASE("a job no up node could hold is queued with a warning, and --follow shows why it waits") {
  LocalCluster cluster(2);
  json spec = SyntheticSpec("too-wide", 4, 1, 64);
  auto r = cluster.Kiln({"submit", cluster.WriteSpec(spec)});
  REQUIRE(r.exit_code == 0);
  CHECK(std::stoll(r.out) > 0);
  CHECK(Contains(r.err, "warning: job"));
  CHECK(Contains(r.err, "Infeasible: needs 4 ranks"));
  auto j = cluster.Kiln({"submit", cluster.WriteSpec(spec), "--json"});
  REQUIRE(j.exit_code == 0);
  CHECK(Contains(json::parse(j.out).value("warning", ""), "Infeasible"));
  // --follow prints the pending reason, not a bare PENDING (it never ends: cut it short).
  auto follow = cluster.Kiln({"submit", cluster.WriteSpec(spec), "--follow"}, 4);
  CHECK(Contains(follow.err, "PENDING  Infeasible: needs 4 ranks"));
}

TEST_CASE("invalid JSON is reported with its line and column") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  const std::string path = cluster.dir() + "/broken.json";
  REQUIRE(kiln::WriteFileAtomic(path, "{\n  \"name\": \"x\",\n  \"resources\": {\"ranks\": 2,}\n}\n")
              .ok());
  auto r = cluster.Kiln({"submit", path});
  CHECK(r.exit_code == 2);
  CHECK(Contains(r.err, "(document): is not valid JSON: line 3, column 28: "));
}

TEST_CASE("a scheduler that is not there is reported within the --timeout the message names") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  cluster.StopScheduler();
  const std::string spec = cluster.WriteSpec(SyntheticSpec("x", 1, 1, 64));
  const auto start = std::chrono::steady_clock::now();
  auto r = cluster.Kiln({"--timeout", "3", "submit", spec}, 30);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(r.exit_code == 3);
  CHECK(Contains(r.err, "within 3.0 s"));
  // One wait of 3 s, not two: the submit is not repeated against a scheduler that never answered
  // the connection (a generous bound: the bug took 6 s).
  CHECK(took < 5.5);
}

TEST_CASE("kiln nodes: LAST SEEN follows heartbeats, memory in the units the worker logs, and a "
          "DOWN node can be removed") {
  LocalCluster cluster(2, 2.0);
  auto last_seen = [&] {
    json nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
    return nodes[0]["last_seen_at"].get<int64_t>();
  };
  const int64_t first = last_seen();
  CHECK(WaitFor([&] { return last_seen() >= first + 1500; }, 10));
  auto table = cluster.Kiln({"nodes"});
  CHECK(std::regex_search(table.out, std::regex(R"(\d+\.\d (GiB|MiB))")));
  CHECK(std::regex_search(Slurp(cluster.dir() + "/worker.log"),
                          std::regex(R"(\d+\.\d (GiB|MiB) memory)")));

  auto refused = cluster.Kiln({"node", "remove", cluster.worker_name()});
  CHECK(refused.exit_code == 1);
  CHECK(Contains(refused.err, "is UP"));
  cluster.StopWorker();
  REQUIRE(WaitFor([&] {
    json nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
    return !nodes.empty() && nodes[0]["state"] == "DOWN";
  }, 15));
  auto removed = cluster.Kiln({"node", "remove", cluster.worker_name()});
  INFO(removed.err);
  CHECK(removed.exit_code == 0);
  CHECK(json::parse(cluster.Kiln({"nodes", "--json"}).out).empty());
  cluster.StopScheduler();  // and it stays removed after a restart
  cluster.StartScheduler();
  CHECK(json::parse(cluster.Kiln({"nodes", "--json"}).out).empty());
}

TEST_CASE("help says who may hold, release and reprioritize, and kiln-train --help is clean") {
  auto help = RunCommand({BinPath("kiln"), "--help"});
  CHECK_FALSE(Contains(help.out, "admin: keep a pending job"));
  CHECK(Contains(help.out, "(its owner or an admin)"));
  auto train = RunCommand({BinPath("kiln-train"), "--help"});
  CHECK(train.exit_code == 0);
  CHECK(Contains(train.out, "--spec"));
  CHECK_FALSE(Contains(train.out + train.err, "MPI_ABORT"));
}
