// Sweeps through the real scheduler (harness): trials are an array's tasks with their parameters
// in; epoch reports go to ASHA, which stops poor trials; the leaderboard and the best trial; a
// kill -9 in the middle; bad sweeps refused naming the field.
#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::Received;
using kiln::testing::ServiceHarness;
using kiln::testing::SmallSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

json Base() {
  json spec = SmallSpec("trial-${array_index}", 1);
  spec["train"]["epochs"] = 9;
  return spec;
}

json Sweep() {
  return {{"name", "grid"},
          {"space",
           {{"model.hidden", {{"type", "grid"}, {"values", {{4}, {8}, {16}}}}},
            {"train.optimizer.lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001}}}}}},
          {"objective", {{"metric", "test_accuracy"}, {"mode", "max"}}},
          {"max_concurrent", 2},
          {"early_stopping", {{"type", "asha"}, {"min_epochs", 1}, {"reduction_factor", 3}}}};
}

Received SubmitSweep(ServiceHarness& h, const json& base, const json& sweep) {
  SubmitRequest request{"sweep-" + std::to_string(h.clock().WallMs()), base, {}, {}, "", false};
  request.sweep = sweep;
  return h.Ask(h.alice(), request);
}

// A trial's accuracy at an epoch: better with more hidden units and lr 0.01.
double Accuracy(const json& spec, int64_t epoch) {
  const double hidden = spec["model"]["hidden"][0].get<double>();
  const double lr = spec["train"]["optimizer"]["lr"].get<double>();
  return 0.5 + hidden / 100 + (lr == 0.01 ? 0.2 : 0.0) + 0.005 * static_cast<double>(epoch);
}

// Plays the worker: each trial reports one epoch per round and exits after its last; a kill
// makes it exit at once (143).
struct TrialRunner {
  ServiceHarness& h;
  FakeWorker& w;
  std::map<std::pair<int64_t, int64_t>, LaunchJob> running;
  std::map<std::pair<int64_t, int64_t>, int64_t> epoch;
  std::set<std::pair<int64_t, int64_t>> seen;
  size_t killed_seen = 0;
  std::vector<LaunchJob> started;

  bool RunUntil(const std::function<bool()>& done, int rounds = 300) {
    for (int i = 0; i < rounds && !done(); ++i) {
      h.Turn(250);
      w.Poll();
      for (const auto& l : w.launches()) {
        if (!seen.insert({l.job_id, l.attempt}).second) continue;
        w.Start(l.job_id, l.attempt);
        running[{l.job_id, l.attempt}] = l;
        started.push_back(l);
      }
      for (; killed_seen < w.kills().size(); ++killed_seen) {
        const KillJob& k = w.kills()[killed_seen];
        if (running.erase({k.job_id, k.attempt}) == 0) continue;
        w.Exit({k.job_id, k.attempt, 143, 0, "stopped", std::nullopt, std::nullopt, std::nullopt});
      }
      for (auto it = running.begin(); it != running.end();) {
        const LaunchJob& l = it->second;
        const int64_t e = ++epoch[it->first];
        w.Send(ProgressReport{l.job_id,
                              l.attempt,
                              {{"epoch", e},
                               {"step", e * 2},
                               {"test_accuracy", Accuracy(l.spec, e)},
                               {"test_loss", 1.0 / static_cast<double>(e)}}});
        if (e == l.spec["train"]["epochs"].get<int64_t>()) {
          w.Exit({l.job_id, l.attempt, 0, 0, "", std::nullopt, std::nullopt, std::nullopt});
          it = running.erase(it);
        } else {
          ++it;
        }
      }
    }
    return done();
  }
};

}  // namespace

TEST_CASE(
    "a sweep runs its trials with their parameters, ASHA stops poor ones, and the "
    "leaderboard ranks them") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 2);
  w.Register();
  h.Turn(0);
  Received submitted = SubmitSweep(h, Base(), Sweep());
  REQUIRE(submitted.envelope.type == "submit_reply");
  const int64_t sweep = submitted.body()["job_id"].get<int64_t>();
  TrialRunner run{h, w};
  // Half way, the scheduler is killed: the sweep and ASHA's record survive.
  REQUIRE(run.RunUntil([&] { return run.started.size() >= 5; }));
  h.Restart();
  w.Register();
  REQUIRE(run.RunUntil([&] { return h.Show(sweep)["state"] != "PENDING"; }));
  json shown = h.Show(sweep);
  CHECK(shown["state"] == "COMPLETED");
  INFO(shown.dump(2));
  CHECK(shown["reason"].get<std::string>().rfind("sweep: 9 trials, ", 0) == 0);

  // Every trial ran once, with its grid point in its spec.
  std::set<std::string> points;
  for (const auto& l : run.started) {
    points.insert(l.spec["model"]["hidden"].dump() + l.spec["train"]["optimizer"]["lr"].dump());
    CHECK(l.spec["name"] == "trial-" + std::to_string(*l.array_index));
  }
  CHECK(points.size() == 9);
  CHECK(run.started.size() == 9);

  const json& board = shown["sweep"];
  REQUIRE(board["trials"].size() == 9);
  int stopped = 0;
  double previous = 2;
  for (const auto& t : board["trials"]) {
    CHECK(t["best"].get<double>() <= previous);  // best first
    previous = t["best"].get<double>();
    if (t["state"] == "STOPPED") {
      ++stopped;
      CHECK_THAT(t["reason"].get<std::string>(), Catch::StartsWith("EarlyStopped: rung ") &&
                                                     Catch::Contains("below the top third"));
      CHECK(t["epochs"].get<int64_t>() < 9);
    } else {
      CHECK(t["state"] == "COMPLETED");
      CHECK(t["epochs"] == 9);
    }
  }
  CHECK(stopped > 0);
  CHECK(stopped == board["stopped"]);
  // The best trial: 16 hidden units and lr 0.01 (trial 7), trained to the end.
  const json& best = board["best"];
  CHECK(best["trial"] == 7);
  CHECK(best["params"]["model.hidden"] == json{16});
  CHECK(best["best"].get<double>() == Approx(0.5 + 0.16 + 0.2 + 0.045));
  CHECK(h.Show(best["job_id"].get<int64_t>())["state"] == "COMPLETED");
}

TEST_CASE("a submitted sweep that is bad is refused naming the field") {
  ServiceHarness h;
  h.Turn(0);
  auto refuse = [&](const json& base, const json& sweep) {
    Received r = SubmitSweep(h, base, sweep);
    REQUIRE(r.envelope.type == "error");
    return r.body().dump();
  };
  json unknown = Sweep();
  unknown["space"]["model.hiddn"] = {{"type", "grid"}, {"values", {1, 2}}};
  CHECK_THAT(refuse(Base(), unknown), Catch::Contains("space.model.hiddn: unknown field"));
  json never = Sweep();
  never["objective"]["metric"] = "val_accuracy";
  CHECK_THAT(refuse(Base(), never),
             Catch::Contains("objective.metric: the trials never report \\\"val_accuracy\\\"; each "
                             "epoch reports test_accuracy, test_loss"));
  json empty = Sweep();
  empty["space"] = json::object();
  CHECK_THAT(refuse(Base(), empty), Catch::Contains("space: the parameters to search"));
  json bad_value = Sweep();
  bad_value["space"]["train.batch_size"] = {{"type", "grid"}, {"values", {0, 32}}};
  CHECK_THAT(refuse(Base(), bad_value), Catch::Contains("space.train.batch_size"));
  Received q = h.Ask(h.alice(), QueueRequest{});
  CHECK(q.body()["data"].empty());
}
