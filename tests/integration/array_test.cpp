// Job arrays end to end: the real CLI, scheduler, agent, mpirun and kiln-train.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sys/stat.h>
#include <map>
#include <set>

#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using nlohmann::json;

namespace {

// Every task row of the array, by index, from `kiln queue --all --json`.
std::map<int64_t, json> TasksOf(LocalCluster& cluster, int64_t array) {
  auto listed = cluster.Kiln({"queue", "--all", "--json"});
  REQUIRE(listed.exit_code == 0);
  std::map<int64_t, json> tasks;
  for (const auto& j : json::parse(listed.out)) {
    if (j.value("array_job", int64_t{0}) != array) continue;
    const int64_t index = j.value("array_index", int64_t{-1});
    REQUIRE(tasks.count(index) == 0);  // one row per index, however often the scheduler restarted
    tasks[index] = j;
  }
  return tasks;
}

// The most tasks whose [started_at, finished_at) overlap at one moment.
size_t MostAtOnce(const std::map<int64_t, json>& tasks) {
  std::vector<std::pair<int64_t, int>> edges;
  for (const auto& [index, t] : tasks) {
    edges.push_back({t.value("started_at", int64_t{0}), +1});
    edges.push_back({t.value("finished_at", int64_t{0}), -1});
  }
  std::sort(edges.begin(), edges.end());  // at the same millisecond an end comes first
  int now = 0, most = 0;
  for (const auto& [time, delta] : edges) most = std::max(most, now += delta);
  return static_cast<size_t>(most);
}

}  // namespace

TEST_CASE("a 100-task array with %4 runs at most 4 at once, survives a kill -9, and completes") {
  LocalCluster cluster(/*slots=*/4);
  json spec = SyntheticSpec("seed-${array_index}", 1, 1, 64);
  spec["train"]["seed"] = "${array_index}";
  auto submitted = cluster.Kiln({"submit", cluster.WriteSpec(spec), "--array", "0-99%4", "--json"});
  REQUIRE(submitted.exit_code == 0);
  const int64_t array = json::parse(submitted.out)["job_id"].get<int64_t>();

  // The queue folds the tasks that have not started into one line.
  auto queue = cluster.Kiln({"queue"});
  CHECK(kiln::testing::Contains(queue.out, std::to_string(array) + "["));

  // Kill the scheduler in the middle: running tasks go on, and no index runs twice.
  json middle = cluster.WaitForJob(
      array,
      [](const json& j) {
        const json states = j["array"].value("states", json::object());
        return states.value("COMPLETED", 0) >= 20;
      },
      240);
  cluster.KillScheduler();
  cluster.StartScheduler();
  json done = cluster.WaitForJob(
      array, [](const json& j) { return j.value("state", "") != "PENDING"; }, 600);
  CHECK(done["state"] == "COMPLETED");
  CHECK(done["reason"] == "array: 100 completed");

  const std::map<int64_t, json> tasks = TasksOf(cluster, array);
  REQUIRE(tasks.size() == 100);
  for (const auto& [index, t] : tasks) CHECK(t["state"] == "COMPLETED");
  CHECK(tasks.begin()->first == 0);
  CHECK(tasks.rbegin()->first == 99);
  CHECK(MostAtOnce(tasks) <= 4);
  CHECK(MostAtOnce(tasks) >= 2);  // the limit, not the cluster, held it back

  // A task by ARRAY_INDEX: its substituted spec, and its output.
  auto shown = cluster.Kiln({"show", std::to_string(array) + "_57", "--json"});
  REQUIRE(shown.exit_code == 0);
  json task = json::parse(shown.out);
  CHECK(task["spec"]["train"]["seed"] == 57);
  CHECK(task["name"] == "seed-57");
  auto logs = cluster.Kiln({"logs", std::to_string(array) + "_57"});
  CHECK(logs.exit_code == 0);
  CHECK(kiln::testing::Contains(logs.out, "finished at step"));
}

TEST_CASE("bad arrays are refused by the CLI and the scheduler, naming the field") {
  LocalCluster cluster(/*slots=*/1);
  const std::string path = cluster.WriteSpec(SyntheticSpec("t", 1, 1, 64));
  auto empty = cluster.Kiln({"submit", path, "--array", "9-3"});
  CHECK(empty.exit_code == 2);
  CHECK(kiln::testing::Contains(empty.err, "--array: \"9-3\" is an empty range"));
  auto limit = cluster.Kiln({"submit", path, "--array", "0-9%0"});
  CHECK(limit.exit_code == 2);
  CHECK(kiln::testing::Contains(limit.err, "--array: after '%'"));
  json bad = SyntheticSpec("t", 1, 1, 64);
  bad["data"]["samples"] = "${array_index}";
  auto task0 = cluster.Kiln({"submit", cluster.WriteSpec(bad, "bad.json"), "--array", "0-3"});
  CHECK(task0.exit_code == 2);
  CHECK(kiln::testing::Contains(task0.err, "task 0: data.samples: must be >= 1, got 0"));
  auto listed = cluster.Kiln({"queue", "--json"});
  CHECK(json::parse(listed.out).empty());
  auto missing = cluster.Kiln({"show", "5_3"});
  CHECK(missing.exit_code != 0);
}

TEST_CASE(
    "a 9-trial sweep with ASHA stops poor trials, survives a kill -9, ranks its trials, "
    "and its best checkpoint predicts") {
  LocalCluster cluster(/*slots=*/2);
  json base = SyntheticSpec("trial-${array_index}", 1, 4, 1024);
  base["checkpoint"] = {{"keep_last", 2}};
  // lr 1e-5 barely moves from chance in an epoch: ASHA should stop those trials that meet rivals.
  json sweep = {{"name", "it-sweep"},
                {"base", base},
                {"space",
                 {{"model.hidden", {{"type", "grid"}, {"values", {{8}, {32}, {64}}}}},
                  {"train.optimizer.lr", {{"type", "grid"}, {"values", {1e-5, 0.01, 0.05}}}}}},
                {"objective", {{"metric", "test_accuracy"}, {"mode", "max"}}},
                {"max_concurrent", 2},
                {"early_stopping", {{"type", "asha"}, {"min_epochs", 1}, {"reduction_factor", 3}}}};
  auto submitted = cluster.Kiln({"sweep", cluster.WriteSpec(sweep, "sweep.json"), "--json"});
  INFO(submitted.err);
  REQUIRE(submitted.exit_code == 0);
  const int64_t id = json::parse(submitted.out)["job_id"].get<int64_t>();

  cluster.WaitForJob(
      id,
      [](const json& j) {
        const json states = j["array"].value("states", json::object());
        return states.value("COMPLETED", 0) + states.value("CANCELLED", 0) >= 3;
      },
      240);
  cluster.KillScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0"});  // for the dashboard, below
  cluster.StartScheduler();
  json done = cluster.WaitForJob(
      id, [](const json& j) { return j.value("state", "") != "PENDING"; }, 600);
  CHECK(done["state"] == "COMPLETED");
  CHECK_THAT(done["reason"].get<std::string>(), Catch::StartsWith("sweep: 9 trials, "));

  auto shown = cluster.Kiln({"sweep", "show", std::to_string(id), "--json"});
  REQUIRE(shown.exit_code == 0);
  json board = json::parse(shown.out);
  REQUIRE(board["trials"].size() == 9);
  int stopped = 0;
  std::set<int64_t> trials;
  double previous = 2;
  for (const auto& t : board["trials"]) {
    trials.insert(t["trial"].get<int64_t>());
    REQUIRE(t["best"].is_number());
    CHECK(t["best"].get<double>() <= previous);
    previous = t["best"].get<double>();
    if (t["state"] == "STOPPED") {
      ++stopped;
      CHECK_THAT(t["reason"].get<std::string>(), Catch::StartsWith("EarlyStopped: rung "));
    } else {
      CHECK(t["state"] == "COMPLETED");
      CHECK(t["epochs"] == 4);
    }
  }
  CHECK(trials.size() == 9);
  CHECK(stopped >= 1);
  CHECK(board["best"]["params"]["train.optimizer.lr"].get<double>() > 1e-4);

  // The text leaderboard, and the best trial's checkpoint predicting.
  auto text = cluster.Kiln({"sweep", "show", std::to_string(id)});
  CHECK(kiln::testing::Contains(text.out, "Best: trial "));
  const std::string best = std::to_string(board["best"]["job_id"].get<int64_t>());
  CHECK(kiln::testing::Contains(text.out, "kiln deploy " + best + " --best"));
  const std::string csv = cluster.dir() + "/rows.csv";
  {
    std::ofstream out(csv);
    for (int f = 0; f < 20; ++f) out << (f ? "," : "") << "f" << f;
    out << "\n";
    for (int f = 0; f < 20; ++f) out << (f ? "," : "") << f * 0.05;
    out << "\n";
  }
  auto predicted = cluster.Kiln({"predict", best, "--input", csv, "--json"}, 60);
  INFO(predicted.err);
  REQUIRE(predicted.exit_code == 0);
  CHECK(json::parse(predicted.out)["label"].get<int>() >= 0);

  // The dashboard's job page of the sweep draws the same leaderboard, in a real browser (its
  // screenshot is kept in test-artifacts/).
  ::mkdir("test-artifacts", 0755);
  auto page = kiln::testing::RunCommand(
      {"/usr/bin/python3", std::string(KILN_SOURCE_DIR) + "/tests/integration/dashboard_browser.py",
       "--sweep", cluster.HttpUrl(), cluster.admin_token(), std::to_string(id),
       "test-artifacts/dashboard-sweep.png"},
      120);
  INFO(page.out << page.err);
  REQUIRE(page.exit_code == 0);
  json drawn = json::parse(page.out);
  CHECK_FALSE(drawn.contains("error"));
  CHECK(drawn["hidden"] == false);
  REQUIRE(drawn["rows"].is_array());
  CHECK(drawn["rows"].size() == 9);
  CHECK_THAT(drawn["rows"][0].get<std::string>(),
             Catch::StartsWith(board["best"]["trial"].dump() + " | " + best + " | COMPLETED"));
  CHECK_THAT(drawn["best"].get<std::string>(),
             Catch::StartsWith("Best: trial " + board["best"]["trial"].dump() + " (job " + best +
                               ")"));

  // A sweep whose objective is never reported is refused, naming the field.
  sweep["objective"]["metric"] = "val_accuracy";
  auto refused = cluster.Kiln({"sweep", cluster.WriteSpec(sweep, "bad.json")});
  CHECK(refused.exit_code == 2);
  CHECK(kiln::testing::Contains(refused.err, "objective.metric: the trials never report"));
}
