// Gangs across hosts: a real multi-host cluster in network namespaces (scripts/netns-cluster.sh),
// one worker per host, mpirun's remote daemons started through kiln-rsh and the agents.
// Where namespaces cannot be made (not root, no CAP_NET_ADMIN), the tests say so and pass.
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "tests/integration/local_cluster.h"
#include "worker/agent/process_group.h"

using kiln::testing::CommandResult;
using kiln::testing::RunCommand;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

const std::string kScript = std::string(KILN_SOURCE_DIR) + "/scripts/netns-cluster.sh";

class NetnsCluster {
 public:
  // Returns nullptr (after a warning) where namespaces cannot be made.
  // `own_bin`: the binaries are copied into the cluster's folder (0711), so that a job's account
  // can run kiln-train and kiln-rsh wherever the build dir is.
  static std::unique_ptr<NetnsCluster> Up(int hosts, int slots, int lease_s = 9,
                                          bool own_bin = false) {
    ::setenv("KILN_BUILD_DIR", KILN_BIN_DIR, 1);
    ::setenv("WORKER_LEASE", std::to_string(lease_s).c_str(), 1);
    CommandResult check = RunCommand({kScript, "check"}, 20);
    if (check.exit_code != 0) {
      WARN("network namespaces are not available here (" + check.out + check.err +
           "): multi-host test not run");
      return nullptr;
    }
    char pattern[] = "/tmp/kiln-netns-XXXXXX";
    std::unique_ptr<NetnsCluster> cluster(new NetnsCluster(::mkdtemp(pattern)));
    if (own_bin) {
      const std::string bin = cluster->dir_ + "/bin";
      std::filesystem::create_directories(bin);
      for (const char* name : {"kiln", "kiln-scheduler", "kiln-worker", "kiln-rsh", "kiln-train"}) {
        std::filesystem::copy_file(std::string(KILN_BIN_DIR) + "/" + name, bin + "/" + name);
      }
      REQUIRE(::chmod(cluster->dir_.c_str(), 0711) == 0);
      REQUIRE(::chmod(bin.c_str(), 0755) == 0);
      ::setenv("KILN_BUILD_DIR", bin.c_str(), 1);
    }
    CommandResult up = RunCommand({kScript, "up", cluster->dir_, std::to_string(hosts),
                                   std::to_string(slots)}, 60);
    INFO(up.out + up.err);
    REQUIRE(up.exit_code == 0);
    return cluster;
  }
  ~NetnsCluster() {
    RunCommand({kScript, "down", dir_}, 60);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  CommandResult Kiln(std::vector<std::string> args) {
    args.insert(args.begin(), {kScript, "kiln", dir_});
    return RunCommand(args, 60);
  }
  json Show(int64_t id) {
    auto r = Kiln({"show", std::to_string(id), "--json"});
    json j = json::parse(r.out, nullptr, false);
    return j.is_discarded() ? json::object() : j;
  }
  json WaitForState(int64_t id, const std::vector<std::string>& states, double timeout_s) {
    json last;
    WaitFor([&] {
      last = Show(id);
      for (const auto& s : states) {
        if (last.value("state", "") == s) return true;
      }
      return false;
    }, timeout_s);
    return last;
  }
  int64_t Submit(const json& spec) {
    const std::string path = dir_ + "/spec-" + std::to_string(++specs_) + ".json";
    std::ofstream(path) << spec.dump();
    auto r = Kiln({"submit", path});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return std::stoll(r.out);
  }
  void KillHost(const std::string& node) {  // node names are kiln-h<N>
    RunCommand({kScript, "kill-host", dir_, node.substr(node.rfind('h') + 1)}, 30);
  }
  // Cuts the host off the network ("down") or joins it again ("up").
  void Link(const std::string& node, const std::string& state) {
    REQUIRE(RunCommand({kScript, "link", dir_, node.substr(node.rfind('h') + 1), state}, 30)
                .exit_code == 0);
  }
  const std::string& dir() const { return dir_; }

 private:
  explicit NetnsCluster(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  int specs_ = 0;
};

json GangSpec(const std::string& name, int epochs, int hidden) {
  return {{"name", name},
          {"resources", {{"ranks", 4}}},
          {"model", {{"type", "mlp"}, {"hidden", {hidden, hidden}}}},
          {"data", {{"type", "synthetic"}, {"samples", 16384}, {"test_samples", 512},
                    {"features", 20}, {"classes", 3}, {"seed", 7}}},
          {"train", {{"epochs", epochs}, {"batch_size", 128}, {"loss", "cross_entropy"},
                     {"optimizer", {{"type", "adam"}, {"lr", 0.01}}}, {"seed", 3}}},
          {"checkpoint", {{"every_steps", 20}, {"keep_last", 2}}},
          {"max_retries", 2}};
}

std::vector<std::string> NodesOf(const json& attempt_or_job, const char* field) {
  std::vector<std::string> nodes;
  for (const auto& share : attempt_or_job[field]) nodes.push_back(share["node"]);
  return nodes;
}

bool AnyProcessOf(int64_t id, int64_t attempt, const std::vector<std::string>& nodes) {
  for (const auto& node : nodes) {
    auto tag = kiln::agent::ExactTag(kiln::agent::RunTag(node, id, attempt));
    if (!kiln::agent::FindTagged(tag).empty()) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a 4-rank job runs as 2 ranks on each of 2 hosts, and survives one host dying") {
  auto cluster = NetnsCluster::Up(/*hosts=*/3, /*slots=*/2);
  if (!cluster) return;

  const int64_t first = cluster->Submit(GangSpec("gang", 2, 64));
  json job = cluster->WaitForState(first, {"COMPLETED", "FAILED"}, 120);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "COMPLETED");
  REQUIRE(job["allocation"].size() == 2);
  for (const auto& share : job["allocation"]) CHECK(share["ranks"] == 2);
  CHECK(job["metrics"]["test_accuracy"].get<double>() > 0.8);
  // The run dir exists on both hosts; the member's holds what its agent prepared.
  for (const auto& node : NodesOf(job, "allocation")) {
    const std::string host = node.substr(node.rfind('h'));
    CHECK(std::filesystem::exists(cluster->dir() + "/" + host + "/work/jobs/" +
                                  std::to_string(first) + "/attempt-1/spec.json"));
  }

  // Kill the second host of a longer gang after its first checkpoint: the attempt fails with
  // the host's silence, every other rank is stopped, and attempt 2 resumes on the free hosts.
  const int64_t id = cluster->Submit(GangSpec("survivor", 8, 256));
  REQUIRE(WaitFor([&] {
    auto ls = json::parse(cluster->Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                          nullptr, false);
    return ls.is_array() && !ls.empty();
  }, 120));
  json running = cluster->Show(id);
  const std::vector<std::string> first_nodes = NodesOf(running, "allocation");
  REQUIRE(first_nodes.size() == 2);
  cluster->KillHost(first_nodes[1]);
  job = cluster->WaitForState(id, {"COMPLETED", "FAILED"}, 180);
  INFO(job.dump(2));
  CHECK(job["state"] == "COMPLETED");
  REQUIRE(job["attempts"].size() == 2);
  const json& lost = job["attempts"][0];
  CHECK(lost["outcome"] == "FAILED");
  CHECK(lost["reason"].get<std::string>().find(first_nodes[1]) != std::string::npos);
  const json& resumed = job["attempts"][1];
  CHECK(resumed["outcome"] == "COMPLETED");
  CHECK(resumed["resumed_from_step"].get<int64_t>() > 0);
  const auto second_nodes = NodesOf(resumed, "nodes");
  CHECK(std::find(second_nodes.begin(), second_nodes.end(), first_nodes[1]) == second_nodes.end());
  CHECK(job["metrics"]["test_accuracy"].get<double>() > 0.8);
  CHECK_FALSE(AnyProcessOf(id, 1, first_nodes));
}

TEST_CASE("cancel removes every rank and daemon of a gang on every host within 5 seconds") {
  auto cluster = NetnsCluster::Up(/*hosts=*/2, /*slots=*/2);
  if (!cluster) return;
  const int64_t id = cluster->Submit(GangSpec("cancelled", 1000, 256));
  json job = cluster->WaitForState(id, {"RUNNING"}, 60);
  REQUIRE(WaitFor([&] { return cluster->Show(id)["metrics"].value("step", 0) > 5; }, 60));
  const std::vector<std::string> nodes = NodesOf(cluster->Show(id), "allocation");
  REQUIRE(nodes.size() == 2);
  REQUIRE(AnyProcessOf(id, 1, {nodes[0]}));
  REQUIRE(AnyProcessOf(id, 1, {nodes[1]}));  // the member's MPI daemon and ranks
  REQUIRE(cluster->Kiln({"cancel", std::to_string(id)}).exit_code == 0);
  CHECK(WaitFor([&] { return !AnyProcessOf(id, 1, nodes); }, 5));
  CHECK(cluster->Show(id)["state"] == "CANCELLED");
}

json PairSpec(const std::string& name) {  // 2 ranks: fits one host of 2 slots
  json spec = GangSpec(name, 1000, 256);
  spec["resources"]["ranks"] = 2;
  return spec;
}

TEST_CASE("a worker cut off for less than its lease keeps its attempt: nothing restarts when the "
          "link comes back") {
  auto cluster = NetnsCluster::Up(/*hosts=*/1, /*slots=*/2, /*lease_s=*/20);
  if (!cluster) return;
  const int64_t id = cluster->Submit(PairSpec("partitioned"));
  REQUIRE(WaitFor([&] { return cluster->Show(id)["metrics"].value("step", 0) > 5; }, 60));
  const std::string node = NodesOf(cluster->Show(id), "allocation").at(0);
  cluster->Link(node, "down");
  REQUIRE(WaitFor([&] {  // the scheduler sees the silence (3 s) ...
    auto nodes = json::parse(cluster->Kiln({"nodes", "--json"}).out, nullptr, false);
    return nodes.is_array() && !nodes.empty() && nodes[0]["state"] == "DOWN";
  }, 20));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // ... and the partition lasts a while
  CHECK(AnyProcessOf(id, 1, {node}));  // the ranks train on, cut off
  cluster->Link(node, "up");
  json before = cluster->Show(id);
  REQUIRE(WaitFor([&] {
    json now = cluster->Show(id);
    return now["metrics"].value("step", 0) > before["metrics"].value("step", 0) + 20;
  }, 60));
  json job = cluster->Show(id);
  INFO(job.dump(2));
  CHECK(job["state"] == "RUNNING");
  CHECK(job["attempt"] == 1);
  CHECK(job["attempts"].size() == 1);
  auto nodes = json::parse(cluster->Kiln({"nodes", "--json"}).out);
  CHECK(nodes[0]["state"] == "UP");
  CHECK(cluster->Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}

TEST_CASE("a worker cut off for longer than its lease stops its attempt itself before the job is "
          "placed elsewhere, so it never runs twice at once") {
  auto cluster = NetnsCluster::Up(/*hosts=*/2, /*slots=*/2, /*lease_s=*/9);
  if (!cluster) return;
  const int64_t id = cluster->Submit(PairSpec("fenced"));
  REQUIRE(WaitFor([&] {
    auto ls = json::parse(cluster->Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                          nullptr, false);
    return ls.is_array() && !ls.empty();
  }, 120));
  const std::string cut = NodesOf(cluster->Show(id), "allocation").at(0);
  cluster->Link(cut, "down");
  // Until attempt 2 runs, watch both: attempt 1's processes on the cut-off host must be gone
  // before attempt 2 is placed.
  bool first_gone = false;
  bool overlapped = false;
  json job;
  const bool moved = WaitFor([&] {
    first_gone = first_gone || !AnyProcessOf(id, 1, {cut});
    job = cluster->Show(id);
    if (job.value("attempt", 0) < 2) return false;
    overlapped = !first_gone && AnyProcessOf(id, 1, {cut});
    return true;
  }, 60);
  INFO(job.dump(2));
  REQUIRE(moved);
  CHECK(first_gone);
  CHECK_FALSE(overlapped);
  const std::string reason = job["attempts"][0]["reason"];
  CHECK(reason.find("worker " + cut + " is DOWN") != std::string::npos);
  CHECK(reason.find("lease ended") != std::string::npos);
  CHECK(NodesOf(job, "allocation").at(0) != cut);
  const std::string log = kiln::testing::Slurp(cluster->dir() + "/" + cut.substr(cut.rfind('h')) +
                                               "/worker.log");
  CHECK(log.find("self-fencing") != std::string::npos);
  cluster->Link(cut, "up");
  CHECK(cluster->Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}

TEST_CASE(
    "a gang of a mapped user runs as its account on every host: mpirun, the MPI daemons "
    "and every rank") {
  if (::getpwnam("kiln-t-alice") == nullptr) {
    RunCommand({"useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "kiln-t-alice"});
  }
  const passwd* account = ::getpwnam("kiln-t-alice");
  REQUIRE(account != nullptr);
  const uid_t uid = account->pw_uid;
  auto cluster = NetnsCluster::Up(/*hosts=*/2, /*slots=*/2, /*lease_s=*/9, /*own_bin=*/true);
  if (!cluster) return;
  REQUIRE(
      RunCommand({cluster->dir() + "/bin/kiln-scheduler", "--state-dir", cluster->dir() + "/state",
                  "user", "set", "admin", "--unix-user", "kiln-t-alice"})
          .exit_code == 0);
  const int64_t id = cluster->Submit(GangSpec("mapped", 40, 64));
  json job = cluster->WaitForState(id, {"RUNNING"}, 60);
  REQUIRE(job["allocation"].size() == 2);
  const std::vector<std::string> nodes = NodesOf(job, "allocation");
  // Every process of the attempt on both hosts, once the ranks run on both.
  std::map<std::string, std::vector<pid_t>> processes;
  auto ranks_on = [&](const std::string& node) {
    int ranks = 0;
    for (pid_t pid : processes[node]) {
      ranks += kiln::testing::ProcFile(pid, "comm") == "kiln-train\n" ? 1 : 0;
    }
    return ranks;
  };
  REQUIRE(WaitFor(
      [&] {
        for (const auto& node : nodes) {
          processes[node] =
              kiln::agent::FindTagged(kiln::agent::ExactTag(kiln::agent::RunTag(node, id, 1)));
        }
        return ranks_on(nodes[0]) == 2 && ranks_on(nodes[1]) == 2;
      },
      60));
  const std::string expected = std::to_string(uid);
  for (const auto& node : nodes) {
    for (pid_t pid : processes[node]) {
      const std::string status = kiln::testing::ProcFile(pid, "status");
      const auto at = status.find("Uid:");
      if (at == std::string::npos) continue;  // ended meanwhile
      INFO(node << " pid " << pid << ": " << kiln::testing::ProcFile(pid, "cmdline"));
      CHECK(status.substr(at, status.find('\n', at) - at) ==
            "Uid:\t" + expected + "\t" + expected + "\t" + expected + "\t" + expected);
    }
  }
  CHECK(cluster->Kiln({"cancel", std::to_string(id)}).exit_code == 0);
}
