// Checkpoints end to end: chunked uploads, pull, retention, rm, resume on a fresh run dir,
// shared_fs, predict; and the upload protocol against corrupt and interrupted uploads.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

bool Completed(const json& j) { return j.value("state", "") == "COMPLETED"; }
bool Finished(const json& j) {
  const std::string s = j.value("state", "");
  return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED";
}

json Checkpoints(LocalCluster& cluster, int64_t id) {
  auto r = cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"});
  json out = json::parse(r.out, nullptr, false);
  return out.is_array() ? out : json::array();
}

}  // namespace

TEST_CASE("checkpoints larger than a chunk are uploaded, kept by keep_last and keep_best, and "
          "pulled byte for byte") {
  LocalCluster cluster;
  json spec = SyntheticSpec("big", 2, 4, 640);
  spec["model"]["hidden"] = {1024, 1024};  // about 13 MB with Adam state: several chunks
  spec["checkpoint"] = {{"every_steps", 10}, {"keep_last", 1},
                        {"keep_best", {{"count", 1}, {"metric", "test_accuracy"}}}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 180);
  REQUIRE(Completed(job));
  json checkpoints = Checkpoints(cluster, id);
  INFO(checkpoints.dump(2));
  REQUIRE(!checkpoints.empty());
  CHECK(checkpoints.size() <= 2);  // the last, and the best if it is another
  CHECK(checkpoints.back()["step"] == 80);
  CHECK(checkpoints.back()["bytes"].get<int64_t>() > 8 << 20);

  const std::string dir = cluster.dir() + "/pulled";
  auto pull = cluster.Kiln({"ckpt", "pull", std::to_string(id), "-o", dir});
  REQUIRE(pull.exit_code == 0);
  const std::string path = pull.out.substr(0, pull.out.find('\n'));
  CHECK(path == dir + "/job-" + std::to_string(id) + "-step-80.pt");
  auto sha = kiln::Sha256OfFile(path);
  REQUIRE(sha.ok());
  CHECK(*sha == checkpoints.back()["sha256"]);
  CHECK(pull.err.find("verified") != std::string::npos);

  auto best = cluster.Kiln({"ckpt", "pull", std::to_string(id), "--best", "-o", dir});
  CHECK(best.exit_code == 0);

  // rm is idempotent.
  const std::string first_step = std::to_string(checkpoints[0]["step"].get<int64_t>());
  auto rm = cluster.Kiln({"ckpt", "rm", std::to_string(id), "--step", first_step});
  CHECK(rm.exit_code == 0);
  CHECK(rm.out.find("removed") != std::string::npos);
  auto again = cluster.Kiln({"ckpt", "rm", std::to_string(id), "--step", first_step});
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("was not there") != std::string::npos);
  CHECK(Checkpoints(cluster, id).size() == checkpoints.size() - 1);
}

TEST_CASE("a job submitted to resume from another job's checkpoint fetches it and continues") {
  LocalCluster cluster;
  json spec = SyntheticSpec("first", 2, 2, 640);
  const int64_t first = cluster.Submit(spec);
  REQUIRE(Completed(cluster.WaitForJob(first, Finished, 120)));
  spec["name"] = "second";
  spec["train"]["epochs"] = 3;
  auto submit = cluster.Kiln({"submit", cluster.WriteSpec(spec, "second.json"), "--resume-from",
                              std::to_string(first) + ":40"});
  REQUIRE(submit.exit_code == 0);
  const int64_t second = std::stoll(submit.out);
  json job = cluster.WaitForJob(second, Finished, 120);
  REQUIRE(Completed(job));
  CHECK(job["resumed_from"]["job_id"] == first);
  CHECK(job["metrics"]["step"] == 60);  // continued from step 40 to 3 epochs x 20 steps
  REQUIRE(WaitFor([&] {
    return cluster.Kiln({"logs", std::to_string(second)}).out.find("resumed from") !=
           std::string::npos;
  }, 10));
  auto logs = cluster.Kiln({"logs", std::to_string(second)}).out;
  CHECK(logs.find("fetched checkpoint 40 of job " + std::to_string(first)) != std::string::npos);

  auto missing = cluster.Kiln({"submit", cluster.WriteSpec(spec, "third.json"), "--resume-from",
                               std::to_string(first) + ":7"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no checkpoint at step 7") != std::string::npos);
}

TEST_CASE("with shared_fs storage the scheduler records paths instead of bytes") {
  LocalCluster cluster;
  const std::string shared = cluster.dir() + "/shared";
  json spec = SyntheticSpec("shared", 2, 2, 640);
  spec["checkpoint"]["storage"] = {{"type", "shared_fs"}, {"path", shared}};
  const int64_t id = cluster.Submit(spec);
  REQUIRE(Completed(cluster.WaitForJob(id, Finished, 120)));
  json checkpoints = Checkpoints(cluster, id);
  REQUIRE(checkpoints.size() == 2);
  CHECK(checkpoints[1]["storage"] == "shared_fs");
  const std::string path = checkpoints[1]["path"];
  CHECK(path.rfind(shared + "/job-" + std::to_string(id) + "/", 0) == 0);
  CHECK(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(cluster.dir() + "/state/checkpoints/" +
                                      checkpoints[1]["sha256"].get<std::string>()));
  // Pull reads it through the scheduler all the same.
  auto pull = cluster.Kiln({"ckpt", "pull", std::to_string(id), "-o", cluster.dir() + "/p"});
  CHECK(pull.exit_code == 0);
}

TEST_CASE("predict with a synthetic model over CSV rows gives one labelled row per input") {
  LocalCluster cluster;
  const int64_t id = cluster.Submit(SyntheticSpec("csv", 1, 2, 640));
  REQUIRE(Completed(cluster.WaitForJob(id, Finished, 120)));
  const std::string csv = cluster.dir() + "/rows.csv";
  {
    std::ofstream out(csv);
    for (int f = 0; f < 20; ++f) out << (f ? "," : "") << "f" << f;
    out << "\n";
    for (int r = 0; r < 5; ++r) {
      for (int f = 0; f < 20; ++f) out << (f ? "," : "") << (r - 2) * 0.3 + f * 0.01;
      out << "\n";
    }
  }
  auto r = cluster.Kiln({"predict", std::to_string(id), "--input", csv, "--json"}, 60);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  int rows = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    json p = json::parse(line);
    CHECK(p["label"].get<int>() >= 0);
    CHECK(p["label"].get<int>() < 3);
    CHECK(p["probability"].get<double>() > 0.0);
    ++rows;
  }
  CHECK(rows == 5);
  // A row with the wrong number of features is named.
  std::ofstream(csv) << "1,2,3\n";
  auto bad = cluster.Kiln({"predict", std::to_string(id), "--input", csv}, 60);
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("line 1: expected 20 features") != std::string::npos);
}

TEST_CASE("predict on the Fashion-MNIST test set reports the accuracy the job reported") {
  const std::string data = "/usr/share/datasets/fashion-mnist";
  if (::access((data + "/t10k-images-idx3-ubyte.gz").c_str(), R_OK) != 0) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  LocalCluster cluster;
  json spec = {{"name", "fmnist"},
               {"resources", {{"ranks", 2}}},
               {"model", {{"type", "mlp"}, {"hidden", {64}}}},
               {"data", {{"type", "fashion-mnist"}, {"path", data}}},
               {"train", {{"epochs", 1}, {"batch_size", 64}, {"loss", "cross_entropy"},
                          {"optimizer", {{"type", "adam"}, {"lr", 0.002}}}, {"seed", 3}}}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 180);
  REQUIRE(Completed(job));
  const double reported = job["metrics"]["test_accuracy"];
  auto r = cluster.Kiln({"predict", std::to_string(id), "--input",
                         data + "/t10k-images-idx3-ubyte.gz", "--labels",
                         data + "/t10k-labels-idx1-ubyte.gz", "--output",
                         cluster.dir() + "/predictions.csv"}, 120);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  char expected[32];
  std::snprintf(expected, sizeof expected, "accuracy %.4f", reported);
  CHECK(r.err.find(expected) != std::string::npos);
  CHECK(r.err.find("of 10000") != std::string::npos);
}

namespace {

// A fake worker speaking the upload protocol directly.
class FakeWorker {
 public:
  explicit FakeWorker(const LocalCluster& cluster)
      : socket_(context_, kiln::transport::SocketKind::kDealer) {
    REQUIRE(socket_.SetRoutingId("worker:fake").ok());
    cluster.ConnectSecurely(socket_, /*as_worker=*/true);
    Send(Encode(AsRootAgent(RegisterWorker{"fake", 1, 1 << 30, 0, {}, {}, "", ""})));
    REQUIRE(Expect("register_ack"));
  }
  void Send(const kiln::transport::Frames& f) { REQUIRE(socket_.Send(f).ok()); }
  std::optional<Envelope> Expect(const std::string& type) {
    for (int waited = 0; waited < 5000; waited += 100) {
      kiln::transport::Poller poller;
      poller.AddSocket(socket_);
      REQUIRE(poller.Wait(100).ok());
      while (auto frames = socket_.Receive()) {
        auto e = DecodeEnvelope((*frames)[0]);
        if (e.ok() && e->type == type) return *e;
      }
    }
    return std::nullopt;
  }

 private:
  kiln::transport::Context context_;
  kiln::transport::Socket socket_;
};

}  // namespace

TEST_CASE("an interrupted upload resumes where it stopped, a corrupt one is refused") {
  LocalCluster cluster(1, 30.0, /*with_worker=*/false);
  const int64_t id = cluster.Submit(SyntheticSpec("fake", 1, 1, 64));
  FakeWorker worker(cluster);
  const std::string bytes(3000, 'k');
  const std::string sha = kiln::Sha256Hex(bytes);
  CheckpointBegin begin{id, 1, 10, 0, json::object(), 3000, sha, std::nullopt};

  worker.Send(Encode(begin));
  auto offset = worker.Expect("ckpt_offset");
  REQUIRE(offset);
  CHECK((*offset).body["offset"] == 0);
  worker.Send(Encode(CheckpointChunk{sha, 0}, "", {bytes.substr(0, 1000)}));
  REQUIRE(worker.Expect("ckpt_offset"));
  // "Reconnect": announcing the upload again answers how much the scheduler holds.
  worker.Send(Encode(begin));
  offset = worker.Expect("ckpt_offset");
  REQUIRE(offset);
  CHECK((*offset).body["offset"] == 1000);
  // A chunk past a gap makes the scheduler ask for a rewind.
  worker.Send(Encode(CheckpointChunk{sha, 2000}, "", {bytes.substr(2000)}));
  offset = worker.Expect("ckpt_offset");
  REQUIRE(offset);
  CHECK((*offset).body["resync"] == true);
  CHECK((*offset).body["offset"] == 1000);
  worker.Send(Encode(CheckpointChunk{sha, 1000}, "", {bytes.substr(1000)}));
  auto done = worker.Expect("ckpt_done");
  REQUIRE(done);
  CHECK((*done).body["ok"] == true);
  json checkpoints = Checkpoints(cluster, id);
  REQUIRE(checkpoints.size() == 1);
  CHECK(checkpoints[0]["sha256"] == sha);

  // Bytes that do not hash to the announced sha256 are refused and discarded.
  const std::string other(500, 'x');
  const std::string claimed = kiln::Sha256Hex(std::string(500, 'y'));
  worker.Send(Encode(CheckpointBegin{id, 1, 20, 0, json::object(), 500, claimed, std::nullopt}));
  REQUIRE(worker.Expect("ckpt_offset"));
  worker.Send(Encode(CheckpointChunk{claimed, 0}, "", {other}));
  done = worker.Expect("ckpt_done");
  REQUIRE(done);
  CHECK((*done).body["ok"] == false);
  CHECK((*done).body["reason"].get<std::string>().find("hash") != std::string::npos);
  CHECK(Checkpoints(cluster, id).size() == 1);
  // Starting again begins from zero.
  worker.Send(Encode(CheckpointBegin{id, 1, 20, 0, json::object(), 500, claimed, std::nullopt}));
  offset = worker.Expect("ckpt_offset");
  REQUIRE(offset);
  CHECK((*offset).body["offset"] == 0);
}
