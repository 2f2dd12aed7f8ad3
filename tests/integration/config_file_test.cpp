// The daemons' config files (common/daemon/toml_config.h): `check` validates a file and names the
// line and key of what is wrong, flags win over the file, and SIGHUP makes a running scheduler
// read its file again and apply what can change live.
#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/integration/local_cluster.h"

using kiln::testing::BinPath;
using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::RunCommand;
using kiln::testing::Slurp;
using kiln::testing::WaitFor;

namespace {
std::string Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST_CASE("kiln-scheduler and kiln-worker check their config files and name each bad line") {
  char pattern[] = "/tmp/kiln-config-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string good = Write(dir + "/scheduler.toml",
                                 "# the admin's settings\n"
                                 "state-dir = \"" +
                                     dir +
                                     "/state\"\n"
                                     "listen = \"tcp://127.0.0.1:7999\"\n"
                                     "keep_logs = \"7d\"\n"
                                     "no-backfill = true\n"
                                     "[user-weight]\n"
                                     "alice = 2\n"
                                     "bob = 0.5\n");
  auto ok = RunCommand({BinPath("kiln-scheduler"), "--config", good, "check"});
  INFO(ok.err);
  REQUIRE(ok.exit_code == 0);
  CHECK(Contains(ok.out, "settings are valid"));
  CHECK(Contains(ok.out, "keep-logs = \"7d\""));
  CHECK(Contains(ok.out, "no-backfill = true"));
  CHECK(Contains(ok.out, "user-weight = [\"alice=2\", \"bob=0.5\"]"));

  auto flag_wins =
      RunCommand({BinPath("kiln-scheduler"), "--config", good, "--keep-logs", "3d", "check"});
  CHECK(Contains(flag_wins.out, "keep-logs = \"3d\""));

  auto unknown =
      RunCommand({BinPath("kiln-scheduler"), "--config",
                  Write(dir + "/typo.toml", "state-dir = \"/x\"\n\nlistn = \"x\"\n"), "check"});
  CHECK(unknown.exit_code != 0);
  CHECK(Contains(unknown.out + unknown.err, "typo.toml line 3: \"listn\" is not a setting here"));
  CHECK(Contains(unknown.out + unknown.err, "listen"));

  auto syntax =
      RunCommand({BinPath("kiln-scheduler"), "--config",
                  Write(dir + "/syntax.toml", "state-dir = \"/x\nlisten = 1\n"), "check"});
  CHECK(syntax.exit_code != 0);
  CHECK(Contains(syntax.out + syntax.err, "syntax.toml line 1"));

  auto value = RunCommand(
      {BinPath("kiln-scheduler"), "--config",
       Write(dir + "/value.toml", "state-dir = \"/x\"\nkeep-audit = \"ages\"\n"), "check"});
  CHECK(value.exit_code != 0);
  CHECK(Contains(value.err, "--keep-audit: expected a duration"));

  auto nested = RunCommand(
      {BinPath("kiln-scheduler"), "--config",
       Write(dir + "/nested.toml", "state-dir = \"/x\"\n[user-weight]\nalice = [1, 2]\n"),
       "check"});
  CHECK(nested.exit_code != 0);
  CHECK(Contains(nested.out + nested.err, "nested.toml line 2: \"user-weight\""));

  auto missing = RunCommand({BinPath("kiln-scheduler"), "--config", dir + "/none.toml", "check"});
  CHECK(missing.exit_code != 0);

  // A worker's check resolves the server key it names (not the files it would create).
  REQUIRE(RunCommand({BinPath("kiln-scheduler"), "--state-dir", dir + "/keys", "key", "show"})
              .exit_code == 0);
  const std::string key_line = "server-key = \"" + dir + "/keys/server.pub\"\n";
  auto worker = RunCommand(
      {BinPath("kiln-worker"), "--config",
       Write(dir + "/worker.toml",
             "name = \"n1\"\nslots = 2\nwork-dir = \"/tmp/w\"\n" + key_line),
       "check"});
  INFO(worker.err);
  CHECK(worker.exit_code == 0);
  CHECK(Contains(worker.out, "slots = \"2\""));
  auto no_key = RunCommand({BinPath("kiln-worker"), "--config", dir + "/worker.toml",
                            "--server-key", dir + "/missing.pub", "check"});
  CHECK(no_key.exit_code != 0);
  CHECK(Contains(no_key.err, "--server-key"));
  auto worker_typo = RunCommand(
      {BinPath("kiln-worker"), "--config",
       Write(dir + "/worker2.toml", "name = \"n1\"\nslots = 2\nwork-dir = \"/tmp/w\"\nslotz = 3\n"),
       "check"});
  CHECK(worker_typo.exit_code != 0);
  CHECK(Contains(worker_typo.out + worker_typo.err, "worker2.toml line 4: \"slotz\""));
  std::filesystem::remove_all(dir);
}

TEST_CASE("SIGHUP makes the scheduler read its config file again and apply what changes live") {
  LocalCluster cluster(/*slots=*/1, 3.0, /*with_worker=*/false);
  const std::string file = cluster.dir() + "/scheduler.toml";
  Write(file, "keep-logs = \"30d\"\n[user-weight]\nalice = 1\n");
  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--config", file});
  cluster.StartScheduler();
  const std::string log = cluster.dir() + "/scheduler.log";

  Write(file, "keep-logs = \"1d\"\nfair-share-half-life = 3600\n[user-weight]\nalice = 3\n");
  REQUIRE(::kill(cluster.scheduler_pid(), SIGHUP) == 0);
  REQUIRE(WaitFor([&] { return Contains(Slurp(log), "setting(s) changed"); }, 10));
  const std::string after = Slurp(log);
  CHECK(Contains(after, "reload: user-weight alice 1 -> 3"));
  CHECK(Contains(after, "reload: keep-logs 2592000 s -> 86400 s"));
  CHECK(Contains(after,
                 "fair-share-half-life changed, but takes effect only when the scheduler "
                 "restarts"));
  CHECK(Contains(after, "reload: 2 setting(s) changed"));

  // A file broken since start is refused as a whole, and the scheduler serves on.
  Write(file, "keep-logs = \"1d\"\nbogus = 1\n");
  REQUIRE(::kill(cluster.scheduler_pid(), SIGHUP) == 0);
  REQUIRE(WaitFor([&] { return Contains(Slurp(log), "reload refused, nothing changed"); }, 10));
  CHECK(Contains(Slurp(log), "\"bogus\" is not a setting here"));
  CHECK(cluster.Kiln({"queue"}).exit_code == 0);
}
