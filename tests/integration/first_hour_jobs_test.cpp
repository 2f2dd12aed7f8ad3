// A newcomer's first hour with jobs (issue 19): permanent errors fail at once with the rank's own
// error as the reason, logs mark attempts without Open MPI's noise, resumed jobs say where they
// came from, CSV prediction picks columns by name, and a stop kiln asked for reads as one.
#include <catch2/catch.hpp>

#include <fstream>

#include "common/file_util.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

bool Finished(const json& job) {
  const std::string s = job.value("state", "");
  return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED";
}

// label = 1 when x0 + 2 x1 - x2 > 0; rows on a fixed lattice so every run sees the same data.
void WriteTable(const std::string& path, const std::vector<std::string>& order, int rows) {
  std::ofstream out(path);
  for (size_t c = 0; c < order.size(); ++c) out << (c ? "," : "") << order[c];
  out << "\n";
  for (int i = 0; i < rows; ++i) {
    const double x0 = (i * 37 % 101) / 50.0 - 1, x1 = (i * 53 % 97) / 48.0 - 1,
                 x2 = (i * 71 % 89) / 44.0 - 1;
    const int label = x0 + 2 * x1 - x2 > 0 ? 1 : 0;
    for (size_t c = 0; c < order.size(); ++c) {
      out << (c ? "," : "");
      if (order[c] == "x0") out << x0;
      if (order[c] == "x1") out << x1;
      if (order[c] == "x2") out << x2;
      if (order[c] == "label") out << label;
    }
    out << "\n";
  }
}

}  // namespace

TEST_CASE("a missing data file fails the job at once with the rank's error as its reason, and "
          "kiln logs marks the attempt without Open MPI's banners") {
  LocalCluster cluster(2);
  json spec = SyntheticSpec("missing-data", 2, 1, 64);
  spec["data"] = {{"type", "fashion-mnist"}, {"path", "/nonexistent-kiln-data"}};
  spec["max_retries"] = 3;
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 60);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "FAILED");
  CHECK(job["attempt"] == 1);  // not retried
  const std::string reason = job.value("reason", "");
  CHECK(Contains(reason, "cannot open /nonexistent-kiln-data/train-images-idx3-ubyte.gz: No such "
                         "file or directory"));
  CHECK(Contains(reason, "rank 0 on " + cluster.worker_name()));
  CHECK(Contains(reason, "not retried"));
  CHECK_FALSE(Contains(reason, "mpirun exited"));
  auto show = cluster.Kiln({"show", std::to_string(id)});
  CHECK(Contains(show.out, "cannot open /nonexistent-kiln-data"));

  auto logs = cluster.Kiln({"logs", std::to_string(id)});
  CHECK(Contains(logs.out, "==== attempt 1 ("));
  CHECK(Contains(logs.out, "error: cannot open /nonexistent-kiln-data"));
  CHECK_FALSE(Contains(logs.out, "MPI_ABORT"));
  // mpirun's banner may reach the scheduler just after the exit it follows: every line comes,
  // each once, but not necessarily before the job's state changes.
  kiln::testing::CommandResult raw;
  CHECK(kiln::testing::WaitFor([&] {
    raw = cluster.Kiln({"logs", std::to_string(id), "--raw"});
    return Contains(raw.out, "MPI_ABORT");
  }, 15));
  CHECK_FALSE(Contains(raw.out, "==== attempt"));
}

TEST_CASE("a job resumed from another says so, and epochs that would train nothing are refused") {
  LocalCluster cluster(2);
  const int64_t first = cluster.Submit(SyntheticSpec("base", 1, 1, 320));
  REQUIRE(cluster.WaitForJob(first, Finished, 120)["state"] == "COMPLETED");
  json again = SyntheticSpec("more", 1, 1, 320);
  auto refused = cluster.Kiln({"submit", cluster.WriteSpec(again, "again.json"), "--resume-from",
                               std::to_string(first)});
  CHECK(refused.exit_code == 2);
  CHECK(Contains(refused.err, "train.epochs: 1 would train nothing"));
  CHECK(Contains(refused.err, "set it to 2 or more"));
  again["train"]["epochs"] = 2;
  auto r = cluster.Kiln({"submit", cluster.WriteSpec(again, "again.json"), "--resume-from",
                         std::to_string(first)});
  REQUIRE(r.exit_code == 0);
  const int64_t second = std::stoll(r.out);
  json job = cluster.WaitForJob(second, Finished, 120);
  REQUIRE(job["state"] == "COMPLETED");
  CHECK(job["metrics"]["step"] == 40);  // 20 resumed + 20 trained
  auto show = cluster.Kiln({"show", std::to_string(second)});
  CHECK(Contains(show.out, "resumed from job " + std::to_string(first) + ", checkpoint step 20"));
}

TEST_CASE("a csv job needs no data.features, and predict matches input columns by name, using the "
          "label column for accuracy") {
  LocalCluster cluster(2);
  const std::string train = cluster.dir() + "/train.csv";
  WriteTable(train, {"x0", "x1", "label", "x2"}, 600);
  json spec = {{"name", "csv-names"},
               {"resources", {{"ranks", 1}}},
               {"model", {{"type", "mlp"}, {"hidden", {16}}}},
               {"data", {{"type", "csv"}, {"path", train}, {"label_column", "label"},
                         {"classes", 2}}},
               {"train", {{"epochs", 10}, {"batch_size", 16}, {"loss", "cross_entropy"},
                          {"optimizer", {{"type", "adam"}, {"lr", 0.02}}}}}};
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, Finished, 120);
  INFO(job.dump(2));
  REQUIRE(job["state"] == "COMPLETED");

  const std::string in_order = cluster.dir() + "/in-order.csv";
  const std::string shuffled = cluster.dir() + "/shuffled.csv";
  WriteTable(in_order, {"x0", "x1", "label", "x2"}, 200);
  WriteTable(shuffled, {"x2", "label", "x1", "x0"}, 200);
  auto a = cluster.Kiln({"predict", std::to_string(id), "--input", in_order}, 60);
  auto b = cluster.Kiln({"predict", std::to_string(id), "--input", shuffled}, 60);
  INFO(a.err + b.err);
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  CHECK(a.out == b.out);  // the same predictions, whatever the column order
  const size_t at = b.err.find("accuracy ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(b.err.substr(at + 9)) > 0.9);
  CHECK(Contains(b.err, "against " + shuffled + " column \"label\""));

  const std::string missing = cluster.dir() + "/missing.csv";
  WriteTable(missing, {"x0", "x2"}, 5);
  auto bad = cluster.Kiln({"predict", std::to_string(id), "--input", missing}, 60);
  CHECK(bad.exit_code != 0);
  CHECK(Contains(bad.err, "no column \"x1\" in the header; the model was trained on x0, x1, x2"));
}

TEST_CASE("a cancel that the gang honours reads as a stop, well within the grace period") {
  LocalCluster cluster(2);
  // The stop takes well under a second; the grace is what a loaded machine may need to get there.
  cluster.RestartWorkerWith({"--kill-grace", "10"});
  const int64_t id = cluster.Submit(SyntheticSpec("long", 2, 100000, 4096));
  REQUIRE(cluster.WaitForJob(id, [](const json& j) {
    return j.contains("metrics") && j["metrics"].value("step", 0) > 20;
  }, 60).value("state", "") == "RUNNING");
  REQUIRE(cluster.Kiln({"cancel", std::to_string(id)}).exit_code == 0);
  json job = cluster.WaitForJob(id, [](const json& j) {
    return !j["attempts"].empty() && j["attempts"][0].value("exit_code", -1) >= 0;
  }, 30);
  INFO(job.dump(2));
  const json& attempt = job["attempts"][0];
  CHECK(attempt["exit_code"] == 143);  // stopped on SIGTERM, not SIGKILLed (137)
  CHECK(Contains(attempt.value("reason", ""), "cancelled by admin; stopped on SIGTERM at step "));
  CHECK(Contains(attempt.value("reason", ""), ", checkpoint saved"));
  auto logs = cluster.Kiln({"logs", std::to_string(id)});
  CHECK(Contains(logs.out, "stopped on SIGTERM at step"));
  CHECK_FALSE(Contains(logs.out, "SIGKILL"));
}
