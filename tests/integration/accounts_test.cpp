// Jobs run as their owner's Unix account (kiln-scheduler user add/set --unix-user): the agent,
// root here, starts every process of the attempt with the account's ids, in a run dir the account
// owns (0700); a file the owner cannot read fails the job naming the path; a job whose account a
// node cannot run waits with an Account reason, and starts once an admin fixes the mapping.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/integration/local_cluster.h"

using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::ProcFile;
using kiln::testing::RankProcess;
using kiln::testing::RunCommand;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

bool StateIs(const json& job, const std::string& state) { return job.value("state", "") == state; }
bool Finished(const json& job) {
  return StateIs(job, "COMPLETED") || StateIs(job, "FAILED") || StateIs(job, "CANCELLED");
}

// A Unix account for tests (made once; tests running in parallel may race to make it).
uid_t EnsureAccount(const std::string& name) {
  if (::getpwnam(name.c_str()) == nullptr) {
    RunCommand({"useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name});
  }
  const passwd* entry = ::getpwnam(name.c_str());
  if (entry == nullptr) throw std::runtime_error("useradd " + name + " failed");
  return entry->pw_uid;
}

// The cluster's folder is made 0700 by mkdtemp: the jobs' account must reach the work dir, and
// the trainer (the build dir may sit under a home the account cannot enter: a copy beside it).
void OpenToAccounts(LocalCluster& cluster) {
  REQUIRE(::chmod(cluster.dir().c_str(), 0711) == 0);
  const std::string bin = cluster.dir() + "/bin";
  std::filesystem::create_directories(bin);
  std::filesystem::copy_file(kiln::testing::BinPath("kiln-train"), bin + "/kiln-train",
                             std::filesystem::copy_options::overwrite_existing);
  REQUIRE(::chmod(bin.c_str(), 0755) == 0);
  cluster.RestartWorkerWith({"--trainer", bin + "/kiln-train"});
}

int64_t SubmitAs(LocalCluster& cluster, const std::string& credentials, const json& spec,
                 const std::string& file) {
  auto r = cluster.KilnWith(credentials, {"submit", cluster.WriteSpec(spec, file)});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return std::stoll(r.out);
}

// The real, effective, saved and file-system uids of a process ("Uid:" of /proc/PID/status).
std::string UidLine(pid_t pid) {
  const std::string status = ProcFile(pid, "status");
  const auto at = status.find("Uid:");
  return at == std::string::npos ? "" : status.substr(at, status.find('\n', at) - at);
}

}  // namespace

TEST_CASE(
    "a mapped user's job runs as that account: every process of the attempt has its uid, "
    "the run dir is the account's with mode 0700, and the job completes") {
  const uid_t uid = EnsureAccount("kiln-t-alice");
  LocalCluster cluster(2);
  OpenToAccounts(cluster);
  const std::string alice = cluster.AddUser("alice", false, "kiln-t-alice");
  const int64_t id = SubmitAs(cluster, alice, SyntheticSpec("mine", 2, 60, 640), "mine.json");
  const std::string run_dir = cluster.dir() + "/work/jobs/" + std::to_string(id) + "/attempt-1";
  pid_t rank = 0;
  REQUIRE(WaitFor([&] { return (rank = RankProcess(run_dir, 1)) > 0; }, 60));
  const std::string expected = "Uid:\t" + std::to_string(uid) + "\t" + std::to_string(uid) + "\t" +
                               std::to_string(uid) + "\t" + std::to_string(uid);
  const auto tagged = kiln::agent::FindTagged(
      kiln::agent::ExactTag(kiln::agent::RunTag(cluster.worker_name(), id, 1)));
  CHECK(tagged.size() >= 3);  // mpirun and both ranks
  for (pid_t pid : tagged) {
    INFO("pid " << pid << ": " << ProcFile(pid, "cmdline"));
    const std::string line = UidLine(pid);
    if (line.empty()) continue;  // ended meanwhile
    CHECK(line == expected);
    CHECK(Contains(ProcFile(pid, "status"), "NoNewPrivs:\t1"));
  }
  struct stat st {};
  REQUIRE(::stat(run_dir.c_str(), &st) == 0);
  CHECK(st.st_uid == uid);
  CHECK((st.st_mode & 0777) == 0700);
  json job = cluster.WaitForJob(id, Finished, 180);
  INFO(job.dump(2));
  CHECK(StateIs(job, "COMPLETED"));
  auto checkpoints = cluster.KilnWith(alice, {"ckpt", "ls", std::to_string(id), "--json"});
  CHECK(checkpoints.exit_code == 0);
  CHECK(Contains(checkpoints.out, "sha256"));  // uploaded by the agent from the account's folder
}

TEST_CASE(
    "a job whose owner cannot read its data or model fails naming the path and the denial: "
    "a root-only file, and another user's file as data and as TorchScript model") {
  EnsureAccount("kiln-t-alice");
  const uid_t bob_uid = EnsureAccount("kiln-t-bob");
  LocalCluster cluster(2);
  OpenToAccounts(cluster);
  const std::string alice = cluster.AddUser("alice", false, "kiln-t-alice");
  const std::string data = cluster.dir() + "/data";
  std::filesystem::create_directories(data);
  REQUIRE(::chmod(data.c_str(), 0755) == 0);
  auto private_file = [&](const std::string& name, const std::string& from, uid_t owner) {
    const std::string path = data + "/" + name;
    std::filesystem::copy_file(from, path);
    REQUIRE(::chown(path.c_str(), owner, owner == 0 ? 0 : owner) == 0);
    REQUIRE(::chmod(path.c_str(), 0600) == 0);
    return path;
  };
  const std::string table = cluster.dir() + "/table.csv";
  {
    std::ofstream out(table);
    out << "a,b,label\n";
    for (int i = 0; i < 200; ++i) out << i % 7 << "," << i % 5 << "," << i % 2 << "\n";
  }
  const std::string root_csv = private_file("root-only.csv", table, 0);
  const std::string bob_csv = private_file("bobs.csv", table, bob_uid);
  const std::string bob_model =
      private_file("bobs.pt", std::string(KILN_SOURCE_DIR) + "/tests/data/tiny_mlp.pt", bob_uid);

  auto csv_spec = [&](const std::string& path) {
    json spec = SyntheticSpec("csv", 1, 1, 64);
    spec["data"] = {{"type", "csv"}, {"path", path}, {"label_column", "label"}, {"classes", 2}};
    spec["max_retries"] = 2;
    return spec;
  };
  json model_spec = SyntheticSpec("model", 1, 1, 64);
  model_spec["model"] = {{"type", "torchscript"}, {"path", bob_model}};
  const std::vector<std::pair<json, std::string>> attacks = {
      {csv_spec(root_csv), "cannot open " + root_csv + ": Permission denied"},
      {csv_spec(bob_csv), "cannot open " + bob_csv + ": Permission denied"},
      {model_spec, "model.path: cannot open " + bob_model + ": Permission denied"}};
  int n = 0;
  for (const auto& [spec, expected] : attacks) {
    const int64_t id = SubmitAs(cluster, alice, spec, "attack" + std::to_string(n++) + ".json");
    json job = cluster.WaitForJob(id, Finished, 90);
    INFO(job.dump(2));
    CHECK(StateIs(job, "FAILED"));
    CHECK(job["attempt"] == 1);  // a denial is not retried
    CHECK(Contains(job.value("reason", ""), expected));
    auto show = cluster.KilnWith(alice, {"show", std::to_string(id)});
    CHECK(Contains(show.out, expected));
    CHECK_FALSE(job["metrics"].contains("test_accuracy"));  // nothing was trained on it
  }
}

TEST_CASE(
    "a job whose account a node lacks, or that maps to root without the opt-in, waits with "
    "an Account reason, and starts once an admin fixes the mapping") {
  EnsureAccount("kiln-t-alice");
  LocalCluster cluster(2);
  OpenToAccounts(cluster);
  const std::string carol = cluster.AddUser("carol", false, "kiln-t-no-such-user");
  const std::string dave = cluster.AddUser("dave", false, "kiln-t-alice");
  REQUIRE(cluster.Admin({"user", "set", "dave", "--unix-user", "root"}).exit_code == 0);
  const int64_t missing = SubmitAs(cluster, carol, SyntheticSpec("c", 1, 1, 64), "c.json");
  const int64_t root = SubmitAs(cluster, dave, SyntheticSpec("d", 1, 1, 64), "d.json");
  const std::string node = cluster.worker_name();
  json waiting = cluster.WaitForJob(
      missing, [](const json& j) { return j.value("reason", "").rfind("Account:", 0) == 0; }, 30);
  CHECK(waiting["state"] == "PENDING");
  CHECK(waiting["reason"] ==
        "Account: user carol maps to account kiln-t-no-such-user, which node " + node +
            " does not have");
  waiting = cluster.WaitForJob(
      root, [](const json& j) { return j.value("reason", "").rfind("Account:", 0) == 0; }, 30);
  CHECK(waiting["state"] == "PENDING");
  CHECK(waiting["reason"] == "Account: user dave maps to account root, and it is uid 0 on node " +
                                 node +
                                 " (an admin who means it: kiln-scheduler user set dave "
                                 "--allow-root)");
  auto listed = cluster.Admin({"user", "list"});
  CHECK(Contains(listed.out, "kiln-t-no-such-user"));

  // The admin's fixes reach the running scheduler: both jobs start and complete.
  REQUIRE(cluster.Admin({"user", "set", "carol", "--unix-user", "kiln-t-alice"}).exit_code == 0);
  REQUIRE(cluster.Admin({"user", "set", "dave", "--allow-root"}).exit_code == 0);
  CHECK(StateIs(cluster.WaitForJob(missing, Finished, 90), "COMPLETED"));
  CHECK(StateIs(cluster.WaitForJob(root, Finished, 90), "COMPLETED"));
  auto bad = cluster.Admin({"user", "set", "dave", "--unix-user=-rf"});
  CHECK(bad.exit_code != 0);
  CHECK(Contains(bad.err, "--unix-user: must be a Unix account name"));
}
