// End-to-end: real scheduler, worker, CLI, mpirun and kiln-train processes on loopback.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/credentials.h"
#include "common/transport/curve.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using nlohmann::json;

namespace {

bool StateIs(const json& job, const std::string& state) { return job.value("state", "") == state; }

bool Finished(const json& job) {
  return StateIs(job, "COMPLETED") || StateIs(job, "FAILED") || StateIs(job, "CANCELLED");
}

// Processes whose command line mentions `needle` (independent of kiln's own run tags).
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos) found.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return found;
}

}  // namespace

TEST_CASE("a short synthetic job trains on 2 ranks to completion with checkpoints recorded, "
          "and a restarted scheduler shows it as it was") {
  LocalCluster cluster;
  const int64_t id = cluster.Submit(SyntheticSpec("short", 2, 2, 640));
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "COMPLETED"));
  CHECK(job["attempt"] == 1);
  CHECK(job["metrics"]["test_accuracy"].get<double>() > 0.5);
  CHECK(job["metrics"]["step"] == 40);  // 2 epochs x 640 / (16 x 2)

  auto ls = cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"});
  REQUIRE(ls.exit_code == 0);
  json checkpoints = json::parse(ls.out);
  REQUIRE(checkpoints.size() == 2);  // steps 20 and 40 (keep_last 2)
  CHECK(checkpoints[1]["step"] == 40);
  CHECK(checkpoints[1]["bytes"].get<int64_t>() > 0);
  CHECK(checkpoints[1]["sha256"].get<std::string>().size() == 64);
  CHECK(checkpoints[1]["metrics"].contains("test_accuracy"));

  auto logs = cluster.Kiln({"logs", std::to_string(id)});
  CHECK(logs.out.find("[rank 0] finished at step 40") != std::string::npos);

  cluster.StopScheduler();
  cluster.StartScheduler();
  json after = cluster.Show(id);
  CHECK(after["state"] == job["state"]);
  CHECK(after["metrics"] == job["metrics"]);
  CHECK(after["checkpoints"].size() == 2);
  CHECK(after["events"].size() == 3);  // submitted, placed, completed
}

TEST_CASE("cancel stops a running job and leaves no mpirun or kiln-train of it") {
  LocalCluster cluster;
  const int64_t id = cluster.Submit(SyntheticSpec("long", 2, 100000, 4096));
  json job = cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 0;
  }, 60);
  REQUIRE(StateIs(job, "RUNNING"));
  const std::string run_dir = cluster.dir() + "/work/jobs/" + std::to_string(id) + "/";
  REQUIRE_FALSE(ProcessesMentioning(run_dir).empty());

  auto cancel = cluster.Kiln({"cancel", std::to_string(id)});
  CHECK(cancel.exit_code == 0);
  CHECK(cancel.out.find("CANCELLED") != std::string::npos);
  CHECK(StateIs(cluster.Show(id), "CANCELLED"));
  CHECK(kiln::testing::WaitFor([&] { return ProcessesMentioning(run_dir).empty(); }, 10));
  CHECK(kiln::agent::FindTagged(kiln::agent::AnyAttemptOfJob(cluster.worker_name(), id)).empty());
  // Cancelling again is refused with the state named.
  auto again = cluster.Kiln({"cancel", std::to_string(id)});
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("is CANCELLED") != std::string::npos);
}

TEST_CASE("a spec with several errors is refused with every field named, and the scheduler "
          "keeps serving") {
  LocalCluster cluster;
  json spec = SyntheticSpec("bad", 0, 1, 100);
  spec["train"]["optimizer"]["lr"] = 0;
  spec["model"]["activation"] = "swish";
  spec["extra"] = true;
  auto r = cluster.Kiln({"submit", cluster.WriteSpec(spec)});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("resources.ranks: must be >= 1, got 0") != std::string::npos);
  CHECK(r.err.find("train.optimizer.lr") != std::string::npos);
  CHECK(r.err.find("model.activation") != std::string::npos);
  CHECK(r.err.find("extra: unknown field") != std::string::npos);
  auto queue = cluster.Kiln({"queue", "--json"});
  CHECK(queue.exit_code == 0);
  CHECK(json::parse(queue.out).empty());
}

TEST_CASE("a job that cannot fit waits with the reason, and unknown job ids are named") {
  LocalCluster cluster(/*slots=*/2);
  const int64_t id = cluster.Submit(SyntheticSpec("too-big", 4, 1, 256));
  json job = cluster.WaitForJob(id, [](const json& j) {
    return j.value("reason", "").rfind("Infeasible", 0) == 0;
  }, 10);
  CHECK(StateIs(job, "PENDING"));
  // Gangs may span nodes, so what is missing is ranks in total, not room on one node.
  CHECK(job["reason"] ==
        "Infeasible: needs 4 ranks (4 slots), the only up node holds 2 such ranks");
  auto missing = cluster.Kiln({"show", "999"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no job with id 999") != std::string::npos);
}

TEST_CASE("a worker that goes silent is DOWN and its running job fails with that reason, when "
          "it comes back its leftover ranks are stopped") {
  LocalCluster cluster(/*slots=*/2, /*worker_timeout_s=*/2.0);
  const int64_t id = cluster.Submit(SyntheticSpec("orphan", 2, 100000, 4096));
  REQUIRE(StateIs(cluster.WaitForJob(id, [](const json& j) {
    return StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 0;
  }, 60), "RUNNING"));
  ::kill(cluster.worker_pid(), SIGSTOP);
  json job = cluster.WaitForJob(id, Finished, 20);
  CHECK(StateIs(job, "FAILED"));
  CHECK(job["reason"].get<std::string>().find("is DOWN") != std::string::npos);
  auto nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
  CHECK(nodes[0]["state"] == "DOWN");

  ::kill(cluster.worker_pid(), SIGCONT);
  const std::string run_dir = cluster.dir() + "/work/jobs/" + std::to_string(id) + "/";
  CHECK(kiln::testing::WaitFor([&] { return ProcessesMentioning(run_dir).empty(); }, 20));
  CHECK(kiln::testing::WaitFor([&] {
    auto n = json::parse(cluster.Kiln({"nodes", "--json"}).out, nullptr, false);
    return n.is_array() && !n.empty() && n[0]["state"] == "UP";
  }, 15));
}

TEST_CASE("a failed attempt is retried and resumes from the latest checkpoint") {
  LocalCluster cluster;
  json spec = SyntheticSpec("retry", 2, 1000, 1024);
  spec["max_retries"] = 1;
  const int64_t id = cluster.Submit(spec);
  // Wait for a checkpoint, then kill the ranks of attempt 1 from outside: the attempt fails.
  REQUIRE(kiln::testing::WaitFor([&] {
    auto ls = json::parse(cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out,
                          nullptr, false);
    return ls.is_array() && !ls.empty();
  }, 60));
  const std::string tag = kiln::agent::RunTag(cluster.worker_name(), id, 1);
  for (pid_t pid : kiln::agent::FindTagged(kiln::agent::ExactTag(tag))) ::kill(pid, SIGKILL);
  json job = cluster.WaitForJob(id, [](const json& j) {
    return j.value("attempt", 0) == 2 && StateIs(j, "RUNNING") && j["metrics"].value("step", 0) > 0;
  }, 60);
  INFO(job.dump(2));
  REQUIRE(job["attempt"] == 2);
  bool retried = false;
  for (const auto& e : job["events"]) {
    retried = retried || (e["from"] == "RUNNING" && e["to"] == "PENDING");
  }
  CHECK(retried);
  // Output travels through mpirun's forwarding, so it may trail the progress reports.
  CHECK(kiln::testing::WaitFor([&] {
    return cluster.Kiln({"logs", std::to_string(id)}).out.find("resumed from") != std::string::npos;
  }, 20));
  cluster.Kiln({"cancel", std::to_string(id)});
}

TEST_CASE("an unreachable scheduler gives a clear error and a non-zero exit within seconds") {
  // RunCommand kills the CLI after 30 s (exit 137), so a hang cannot pass as exit code 3.
  char folder[] = "/tmp/kiln-unreachable-XXXXXX";
  REQUIRE(::mkdtemp(folder) != nullptr);
  const std::string credentials = std::string(folder) + "/credentials.json";
  REQUIRE(kiln::SaveCredentials(credentials, {"tcp://127.0.0.1:1",
                                              kiln::transport::NewCurveKeyPair()->public_key,
                                              "nobody", kiln::NewAccessToken()}).ok());
  auto r = kiln::testing::RunCommand({kiln::testing::BinPath("kiln"), "--credentials", credentials,
                                      "queue"}, 30);
  std::filesystem::remove_all(folder);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("no reply from the scheduler at tcp://127.0.0.1:1") != std::string::npos);
}

TEST_CASE("a cnn job on image-shaped synthetic data trains to completion on 2 ranks") {
  LocalCluster cluster;
  json spec = SyntheticSpec("cnn", 2, 2, 640);
  spec["data"]["features"] = 64;  // 8x8 images
  spec["model"] = {{"type", "cnn"},
                   {"conv", {{{"channels", 4}, {"kernel", 3}, {"pool", 2}}}},
                   {"hidden", {16}}};
  spec["train"]["bucket_mb"] = 0.001;  // several buckets even for this small net
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "COMPLETED"));
  CHECK(job["metrics"]["test_accuracy"].get<double>() > 0.4);
  CHECK(job["metrics"].contains("allreduce_wait_s"));
  CHECK(job["metrics"]["bytes_reduced"].get<int64_t>() > 0);
  auto logs = cluster.Kiln({"logs", std::to_string(id)}).out;
  CHECK(logs.find("in 2 allreduce buckets") != std::string::npos);
}

TEST_CASE("a csv job with standardization, a validation split, nesterov SGD, a cosine schedule "
          "and clipping trains, predict scales its rows the same way") {
  LocalCluster cluster;
  const std::string csv = cluster.dir() + "/table.csv";
  {
    std::ofstream out(csv);
    out << "width,height,label,depth\n";
    for (int i = 0; i < 600; ++i) {
      const double w = (i * 37 % 100) * 10.0, h = (i * 53 % 100) / 10.0, d = (i * 71 % 100);
      const int label = w / 1000.0 + h / 10.0 > 1.0 ? 1 : 0;  // separable, on wildly different scales
      out << w << "," << h << "," << label << "," << d << "\n";
    }
  }
  json spec = {{"name", "csv"},
               {"resources", {{"ranks", 2}}},
               {"model", {{"type", "mlp"}, {"hidden", {16}}}},
               {"data", {{"type", "csv"}, {"path", csv}, {"label_column", "label"}, {"features", 3},
                         {"classes", 2}, {"standardize", true}, {"validation_split", 0.25}}},
               {"train", {{"epochs", 20}, {"batch_size", 16}, {"loss", "cross_entropy"},
                          {"optimizer", {{"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.9},
                                         {"nesterov", true}}},
                          {"lr_schedule", {{"type", "cosine"}, {"warmup_steps", 10}}},
                          {"grad_clip_norm", 1.0}}}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "COMPLETED"));
  CHECK(job["metrics"]["val_accuracy"].get<double>() > 0.9);
  CHECK_FALSE(job["metrics"].contains("test_accuracy"));
  CHECK(job["metrics"]["lr"].get<double>() < 0.01);  // cosine ends near zero

  const std::string rows = cluster.dir() + "/rows.csv";
  std::ofstream(rows) << "width,height,depth\n990,9.9,5\n10,0.1,5\n";
  auto predicted = cluster.Kiln({"predict", std::to_string(id), "--input", rows}, 60);
  INFO(predicted.err);
  REQUIRE(predicted.exit_code == 0);
  CHECK(predicted.out.find("0,1,") != std::string::npos);  // large width and height: class 1
  CHECK(predicted.out.find("1,0,") != std::string::npos);
}

TEST_CASE("a regression job with mse, adamw and a step schedule reports a loss and no accuracy") {
  LocalCluster cluster;
  json spec = SyntheticSpec("regression", 2, 5, 640);
  spec["data"] = {{"type", "synthetic"}, {"task", "regression"}, {"samples", 640},
                  {"test_samples", 128}, {"features", 8}, {"seed", 4}};
  spec["train"]["loss"] = "mse";
  spec["train"]["optimizer"] = {{"type", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.01}};
  spec["train"]["lr_schedule"] = {{"type", "step"}, {"step_size", 40}, {"gamma", 0.5}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "COMPLETED"));
  CHECK_FALSE(job["metrics"].contains("test_accuracy"));
  CHECK(job["metrics"]["test_loss"].get<double>() < 1.0);  // the target's variance is about 8
  CHECK(job["metrics"]["lr"].get<double>() == Approx(0.01 * 0.25));  // steps 80-99
}

TEST_CASE("a torchscript module's parameters are trained, checkpointed and used to predict") {
  LocalCluster cluster;
  json spec = SyntheticSpec("scripted", 2, 4, 640);  // 20 features, 3 classes
  spec["model"] = {{"type", "torchscript"},
                   {"path", std::string(KILN_SOURCE_DIR) + "/tests/data/tiny_mlp.pt"}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(StateIs(job, "COMPLETED"));
  CHECK(job["metrics"]["test_accuracy"].get<double>() > 0.6);  // chance is 0.33
  const std::string rows = cluster.dir() + "/rows.csv";
  {
    std::ofstream out(rows);
    for (int f = 0; f < 20; ++f) out << (f ? "," : "") << f * 0.1;
    out << "\n";
  }
  auto predicted = cluster.Kiln({"predict", std::to_string(id), "--input", rows, "--json"}, 60);
  INFO(predicted.err);
  CHECK(predicted.exit_code == 0);
  CHECK(predicted.out.find("\"row\":0") != std::string::npos);

  spec["model"]["path"] = "/nonexistent/model.pt";
  const int64_t bad = cluster.Submit(spec);
  json failed = cluster.WaitForJob(bad, Finished, 60);
  CHECK(StateIs(failed, "FAILED"));
  auto logs = cluster.Kiln({"logs", std::to_string(bad)}).out;
  CHECK(logs.find("model.path: cannot open /nonexistent/model.pt: No such file or directory") !=
        std::string::npos);
}
