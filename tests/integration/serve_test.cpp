// Deploy and serve, end to end on a real cluster: a trained job's checkpoint deployed with
// `kiln deploy`, answered by kiln-serve replicas over the Open Inference Protocol (cpp-httplib's
// client here, and `kiln predict --service`), the same answers as `kiln predict`; bad requests
// refused with the field named; a killed replica replaced and a rolling update, both under a
// client loop that sees no failed request; undeploy leaves no process.
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/credentials.h"
#include "tests/integration/local_cluster.h"

using nlohmann::json;
using namespace kiln::testing;

namespace {

// The token a user with kiln token `token` calls service `name`'s replicas with.
std::string CallToken(const std::string& token, const std::string& name) {
  return kiln::ServiceCallToken(kiln::AccessTokenDigest(token), name);
}

// A binary classifier on 20 features, trained for 2 epochs (checkpoints every 32 steps).
json BinarySpec() {
  return {{"name", "serve-binary"},
          {"resources", {{"ranks", 1}}},
          {"model",
           {{"type", "mlp"},
            {"hidden", {16, 16}},
            {"activation", "relu"},
            {"output_units", 1},
            {"output_activation", "sigmoid"}}},
          {"data",
           {{"type", "synthetic"},
            {"samples", 1024},
            {"test_samples", 256},
            {"features", 20},
            {"classes", 2},
            {"seed", 7}}},
          {"train",
           {{"epochs", 2},
            {"batch_size", 16},
            {"loss", "binary_cross_entropy"},
            {"optimizer", {{"type", "adam"}, {"lr", 0.01}}},
            {"seed", 1}}},
          {"checkpoint", {{"every_steps", 32}, {"keep_last", 5}}}};
}

json Services(LocalCluster& cluster, const std::string& name) {
  auto r = cluster.Kiln({"services", name, "--json"});
  if (r.exit_code != 0) return json::object();
  json all = json::parse(r.out, nullptr, false);
  return all.is_array() && !all.empty() ? all[0] : json::object();
}

std::string WriteRows(const std::string& dir, int rows, int seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::normal_distribution<double> normal;
  const std::string path = dir + "/rows-" + std::to_string(seed) + ".csv";
  std::ofstream out(path);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < 20; ++c) out << (c ? "," : "") << normal(gen);
    out << "\n";
  }
  return path;
}

json InferBody(int rows, float value = 0.5f) {
  return {{"inputs",
           {{{"name", "input"},
             {"shape", {rows, 20}},
             {"datatype", "FP32"},
             {"data", std::vector<float>(static_cast<size_t>(rows) * 20, value)}}}}};
}

// One POST to /v2/models/NAME/infer at `endpoint`: status (0: no answer) and body.
std::pair<int, std::string> Post(const std::string& endpoint, const std::string& path,
                                 const std::string& token, const std::string& body) {
  httplib::Client client(endpoint);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(10, 0);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  auto r = client.Post(path.c_str(), headers, body, "application/json");
  if (!r) return {0, ""};
  return {r->status, r->body};
}

// Requests in a loop over the service's ready endpoints (refreshed from `kiln services`), each
// request going to the next replica when one does not answer, as kiln predict --service does.
// Counts requests no replica answered.
class ClientLoop {
 public:
  ClientLoop(LocalCluster& cluster, std::string name, std::string token)
      : cluster_(cluster), name_(std::move(name)), token_(std::move(token)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~ClientLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t answered() const { return answered_; }
  int64_t failed() const { return failed_; }
  int64_t retried() const { return retried_; }

 private:
  void Refresh() {
    json view = Services(cluster_, name_);
    std::vector<std::string> fresh;
    for (const auto& e : view.value("endpoints", json::array())) fresh.push_back(e);
    if (!fresh.empty()) endpoints_ = fresh;
  }
  void Run() {
    const std::string body = InferBody(4).dump();
    auto refreshed = std::chrono::steady_clock::now();
    Refresh();
    size_t next = 0;
    while (!stop_) {
      if (std::chrono::steady_clock::now() - refreshed > std::chrono::milliseconds(300)) {
        Refresh();
        refreshed = std::chrono::steady_clock::now();
      }
      bool ok = false;
      for (size_t t = 0; t < endpoints_.size() * 3 && !ok; ++t) {
        const std::string& e = endpoints_[next++ % endpoints_.size()];
        auto [status, reply] = Post(e, "/v2/models/" + name_ + "/infer", token_, body);
        ok = status == 200;
        if (!ok) {
          ++retried_;
          if (t + 1 == endpoints_.size()) Refresh();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      (ok ? answered_ : failed_)++;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  LocalCluster& cluster_;
  std::string name_, token_;
  std::vector<std::string> endpoints_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> answered_{0}, failed_{0}, retried_{0};
  std::thread thread_;
};

int64_t TrainBinary(LocalCluster& cluster) {
  const int64_t job = cluster.Submit(BinarySpec());
  json done = cluster.WaitForJob(
      job, [](const json& j) { return j["state"] != "PENDING" && j["state"] != "RUNNING"; }, 180);
  REQUIRE(done["state"] == "COMPLETED");
  return job;
}

// The kiln-serve processes of this cluster (their command lines name its work dir).
std::vector<pid_t> ServePids(const LocalCluster& cluster) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    std::string cmdline = ProcFile(pid, "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (Contains(cmdline, "kiln-serve ") && Contains(cmdline, cluster.dir())) pids.push_back(pid);
  }
  return pids;
}

}  // namespace

TEST_CASE(
    "deploy: HTTP and kiln predict --service answer as kiln predict, bad requests are "
    "refused by field, grants, undeploy leaves no process") {
  LocalCluster cluster(2);
  const int64_t job = TrainBinary(cluster);
  auto deployed =
      cluster.Kiln({"deploy", std::to_string(job), "--name", "clf", "--json", "--wait", "60"}, 90);
  REQUIRE(deployed.exit_code == 0);
  json view = json::parse(deployed.out);
  CHECK(view["ready"] == 1);
  CHECK(view["state"] == "active");
  REQUIRE(view["endpoints"].size() == 1);
  const std::string endpoint = view["endpoints"][0];
  const std::string token = CallToken(cluster.admin_token(), "clf");
  auto printed = cluster.Kiln({"service", "token", "clf"});
  REQUIRE(printed.exit_code == 0);
  CHECK(printed.out == token + "\n");
  const std::string infer = "/v2/models/clf/infer";

  // Metadata and health, as standard clients read them.
  httplib::Client client(endpoint);
  CHECK(client.Get("/v2/health/live")->status == 200);
  CHECK(client.Get("/v2/health/ready")->status == 200);
  auto meta = client.Get("/v2/models/clf", {{"Authorization", "Bearer " + token}});
  REQUIRE(meta);
  REQUIRE(meta->status == 200);
  json metadata = json::parse(meta->body);
  CHECK(metadata["inputs"][0]["shape"] == json({-1, 20}));
  CHECK(metadata["versions"][0] == view["version"]);

  // The same rows through the service, over HTTP and with kiln predict --service, and locally.
  const std::string rows = WriteRows(cluster.dir(), 300, 11);
  auto local = cluster.Kiln({"predict", std::to_string(job), "--input", rows}, 120);
  REQUIRE(local.exit_code == 0);
  auto remote = cluster.Kiln({"predict", "--service", "clf", "--input", rows}, 120);
  INFO(remote.err);
  REQUIRE(remote.exit_code == 0);
  CHECK(remote.out == local.out);
  CHECK(SplitLines(local.out).size() == 301);
  {
    std::ifstream in(rows);
    std::string line;
    std::getline(in, line);
    std::vector<float> values;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) values.push_back(std::stof(cell));
    json body = {
        {"id", "first-row"},
        {"inputs",
         {{{"name", "input"}, {"shape", {1, 20}}, {"datatype", "FP32"}, {"data", values}}}}};
    auto [status, reply] = Post(endpoint, infer, token, body.dump());
    REQUIRE(status == 200);
    json answer = json::parse(reply);
    CHECK(answer["id"] == "first-row");
    const std::string first = SplitLines(local.out)[1];  // "0,LABEL,PROBABILITY"
    CHECK(first.substr(0, first.rfind(',')) ==
          "0," + std::to_string(answer["outputs"][0]["data"][0].get<int64_t>()));
  }

  // Bad requests: each gets its status and names what is wrong; the replica goes on.
  auto refused = [&](const std::string& body, const std::string& with_token, int status,
                     const std::string& says) {
    auto [got, reply] = Post(endpoint, infer, with_token, body);
    INFO(reply);
    CHECK(got == status);
    CHECK(Contains(reply, says));
  };
  json wrong_shape = InferBody(2);
  wrong_shape["inputs"][0]["shape"] = {2, 21};
  refused(wrong_shape.dump(), token, 400, "inputs[0].shape");
  json wrong_type = InferBody(1);
  wrong_type["inputs"][0]["datatype"] = "INT64";
  refused(wrong_type.dump(), token, 400, "inputs[0].datatype");
  json not_number = InferBody(1);
  not_number["inputs"][0]["data"][3] = "three";
  refused(not_number.dump(), token, 400, "inputs[0].data[3]");
  refused("{\"inputs\": [{", token, 400, "not valid JSON");
  refused(std::string(17 << 20, ' '), token, 413, "limit");
  refused(InferBody(1).dump(), "", 401, "no token");
  const std::string bob = cluster.AddUser("bob");
  const std::string bob_token = CallToken(cluster.TokenOf(bob), "clf");
  refused(InferBody(1).dump(), bob_token, 403, "service grant");
  // The kiln token itself opens no replica: callers never hand it to the owner's process.
  refused(InferBody(1).dump(), cluster.admin_token(), 403, "may not use");
  refused(InferBody(1).dump(), "kiln_not_a_token", 403, "may not use");
  CHECK(Post(endpoint, infer, token, InferBody(3).dump()).first == 200);

  // Bob does not see the service until granted; then he may call it too.
  auto bob_sees = cluster.KilnWith(bob, {"services", "--json"});
  REQUIRE(bob_sees.exit_code == 0);
  CHECK(json::parse(bob_sees.out).empty());
  CHECK(cluster.KilnWith(bob, {"undeploy", "clf"}).exit_code != 0);
  CHECK(cluster.Kiln({"service", "grant", "clf", "bob"}).exit_code == 0);
  CHECK(WaitFor([&] { return Post(endpoint, infer, bob_token, InferBody(1).dump()).first == 200; },
                10));
  CHECK(json::parse(cluster.KilnWith(bob, {"services", "--json"}).out).size() == 1);
  // A grantee predicts through the service too (the view carries what reading the input takes).
  auto bob_predicts = cluster.KilnWith(bob, {"predict", "--service", "clf", "--input", rows}, 120);
  INFO(bob_predicts.err);
  CHECK(bob_predicts.exit_code == 0);
  CHECK(bob_predicts.out == local.out);
  CHECK(cluster.Kiln({"service", "revoke", "clf", "bob"}).exit_code == 0);
  CHECK(WaitFor([&] { return Post(endpoint, infer, bob_token, InferBody(1).dump()).first == 403; },
                10));

  // A second deploy under the same name is refused; a training spec with serve is refused.
  auto again = cluster.Kiln({"deploy", std::to_string(job), "--name", "clf"});
  CHECK(again.exit_code != 0);
  CHECK(Contains(again.err, "--update"));
  auto bad_name = cluster.Kiln({"deploy", std::to_string(job), "--name", "Bad_Name"});
  CHECK(bad_name.exit_code != 0);
  CHECK(Contains(bad_name.err, "lowercase"));

  CHECK(ServePids(cluster).size() == 1);
  auto undeployed = cluster.Kiln({"undeploy", "clf"});
  CHECK(undeployed.exit_code == 0);
  CHECK(WaitFor([&] { return ServePids(cluster).empty(); }, 20));
  CHECK(Services(cluster, "clf").empty());
}

TEST_CASE(
    "deploy: a killed replica is replaced, a rolling update keeps N-1 ready, a restarted "
    "scheduler keeps the service, under a client loop that sees no failed request") {
  LocalCluster cluster(3);  // two replicas and the rollout's extra one
  const int64_t job = TrainBinary(cluster);
  auto deployed = cluster.Kiln({"deploy", std::to_string(job) + ":32", "--name", "clf",
                                "--replicas", "2", "--json", "--wait", "90"},
                               120);
  REQUIRE(deployed.exit_code == 0);
  REQUIRE(json::parse(deployed.out)["ready"] == 2);
  ClientLoop loop(cluster, "clf", CallToken(cluster.admin_token(), "clf"));
  REQUIRE(WaitFor([&] { return loop.answered() > 20; }, 30));

  // A replica killed: the client loop goes to the other; a new one takes its place.
  std::vector<pid_t> pids = ServePids(cluster);
  REQUIRE(pids.size() == 2);
  REQUIRE(::kill(pids[0], SIGKILL) == 0);
  CHECK(WaitFor(
      [&] {
        json v = Services(cluster, "clf");
        const std::vector<pid_t> now = ServePids(cluster);
        return v.value("ready", 0) == 2 && now.size() == 2 &&
               std::find(now.begin(), now.end(), pids[0]) == now.end();
      },
      60));
  const int64_t answered_before_update = loop.answered();

  // Rolling update to the latest checkpoint: never fewer than N-1 ready, all replicas end on it.
  auto update = cluster.Kiln({"deploy", "--update", "clf", std::to_string(job), "--wait", "0"});
  REQUIRE(update.exit_code == 0);
  int min_ready = 2;
  std::string target;
  bool rolled = WaitFor(
      [&] {
        json v = Services(cluster, "clf");
        if (v.empty()) return false;
        target = v["version"];
        min_ready = std::min(min_ready, v["ready"].get<int>());
        bool all_new = v["replica_jobs"].size() == 2;
        for (const auto& r : v["replica_jobs"])
          all_new = all_new && r["version"] == target && r["ready"];
        return all_new && !v["rolling"].get<bool>();
      },
      90);
  CHECK(rolled);
  CHECK(min_ready >= 1);
  CHECK(target != std::to_string(job) + ":32");
  CHECK(WaitFor([&] { return loop.answered() > answered_before_update + 20; }, 30));

  // The scheduler killed and restarted: the service and its replicas are still there.
  cluster.KillScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0"});
  cluster.StartScheduler();
  CHECK(WaitFor([&] { return Services(cluster, "clf").value("ready", 0) == 2; }, 30));
  // Admins see the service's replicas in the scheduler's /metrics.
  httplib::Client metrics(cluster.HttpUrl());
  CHECK(WaitFor(
      [&] {
        auto r = metrics.Get("/metrics");
        return r && Contains(r->body, "kiln_service_replicas{") &&
               Contains(r->body, "service=\"clf\",kind=\"ready\"} 2");
      },
      15));
  CHECK(ServePids(cluster).size() == 2);
  // The HTTP API lists it as the CLI does.
  httplib::Client api(cluster.HttpUrl());
  auto listed =
      api.Get("/api/v1/services/clf", {{"Authorization", "Bearer " + cluster.admin_token()}});
  REQUIRE(listed);
  CHECK(listed->status == 200);
  CHECK(json::parse(listed->body)[0]["ready"] == 2);
  // And the dashboard's services page, in a real browser (its screenshot is kept in
  // test-artifacts/).
  ::mkdir("test-artifacts", 0755);
  auto page = RunCommand(
      {"/usr/bin/python3", std::string(KILN_SOURCE_DIR) + "/tests/integration/dashboard_browser.py",
       "--services", cluster.HttpUrl(), cluster.admin_token(), "clf",
       "test-artifacts/dashboard-services.png"},
      120);
  INFO(page.out << page.err);
  REQUIRE(page.exit_code == 0);
  json shown = json::parse(page.out);
  CHECK_FALSE(shown.contains("error"));
  CHECK(Contains(shown.value("row", ""), "clf | admin | ACTIVE | " + target + " | 2/2"));
  CHECK(shown["hidden"] == false);
  loop.Stop();
  INFO("answered " << loop.answered() << ", retried " << loop.retried());
  CHECK(loop.failed() == 0);
  CHECK(loop.answered() > 40);
  CHECK(cluster.Kiln({"undeploy", "clf"}).exit_code == 0);
  CHECK(WaitFor([&] { return ServePids(cluster).empty(); }, 20));
}
