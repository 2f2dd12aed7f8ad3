#include "scheduler/core/sweep.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <set>

using namespace kiln::core;
using nlohmann::json;

namespace {

json Base() {
  return {{"name", "mlp"},
          {"model", {{"type", "mlp"}, {"hidden", {16}}}},
          {"data", {{"type", "synthetic"}}},
          {"train", {{"epochs", 9}, {"loss", "cross_entropy"}}}};
}

json Sweep() {
  return {{"base", Base()},
          {"space",
           {{"model.hidden", {{"type", "grid"}, {"values", {{32}, {64}, {128}}}}},
            {"train.optimizer.lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001}}}}}},
          {"objective", {{"metric", "test_accuracy"}, {"mode", "max"}}},
          {"max_concurrent", 2},
          {"early_stopping", {{"type", "asha"}, {"min_epochs", 1}, {"reduction_factor", 3}}}};
}

SweepSpec Parsed(const json& doc) {
  SweepParseResult r = ParseSweepSpec(doc);
  for (const auto& e : r.errors) UNSCOPED_INFO(e);
  REQUIRE(r.ok());
  return r.spec;
}

std::string AllErrors(const json& doc) {
  std::string out;
  for (const auto& e : ParseSweepSpec(doc).errors) out += e + "\n";
  return out;
}

}  // namespace

TEST_CASE("a grid sweep walks the product of its grid parameters", "[sweep]") {
  SweepSpec s = Parsed(Sweep());
  CHECK(s.max_trials == 9);
  CHECK(s.max_concurrent == 2);
  CHECK(s.name == "mlp");
  std::set<std::string> seen;
  for (int64_t t = 0; t < 9; ++t) seen.insert(TrialParams(s, t).dump());
  CHECK(seen.size() == 9);
  // The last parameter (by path) varies fastest.
  CHECK(TrialParams(s, 0) == json{{"model.hidden", {32}}, {"train.optimizer.lr", 0.1}});
  CHECK(TrialParams(s, 1) == json{{"model.hidden", {32}}, {"train.optimizer.lr", 0.01}});
  CHECK(TrialParams(s, 3) == json{{"model.hidden", {64}}, {"train.optimizer.lr", 0.1}});
  json spec = ApplyParams(Base(), TrialParams(s, 4));
  CHECK(spec["model"]["hidden"] == json{64});
  CHECK(spec["train"]["optimizer"]["lr"] == 0.01);
  CHECK(spec["train"]["epochs"] == 9);  // the rest of the base is kept
}

TEST_CASE("random parameters are drawn within bounds, the same for the same seed", "[sweep]") {
  json doc = Sweep();
  doc["space"] = {{"train.optimizer.lr", {{"type", "log_uniform"}, {"min", 1e-4}, {"max", 1e-1}}},
                  {"train.optimizer.momentum", {{"type", "uniform"}, {"min", 0}, {"max", 0.9}}},
                  {"train.batch_size", {{"type", "int_uniform"}, {"min", 16}, {"max", 64}}},
                  {"model.activation", {{"type", "choice"}, {"values", {"relu", "tanh"}}}}};
  doc["max_trials"] = 50;
  doc["seed"] = 7;
  SweepSpec s = Parsed(doc);
  std::set<std::string> activations;
  double lowest_lr = 1, highest_lr = 0;
  for (int64_t t = 0; t < 50; ++t) {
    json p = TrialParams(s, t);
    CHECK(p == TrialParams(s, t));
    const double lr = p["train.optimizer.lr"];
    CHECK(lr >= 1e-4);
    CHECK(lr <= 1e-1);
    lowest_lr = std::min(lowest_lr, lr);
    highest_lr = std::max(highest_lr, lr);
    CHECK(p["train.optimizer.momentum"].get<double>() <= 0.9);
    CHECK(p["train.batch_size"].get<int64_t>() >= 16);
    CHECK(p["train.batch_size"].get<int64_t>() <= 64);
    activations.insert(p["model.activation"].get<std::string>());
  }
  CHECK(activations.size() == 2);
  CHECK(lowest_lr < 1e-3);  // log-uniform: small values are as likely as large decades
  CHECK(highest_lr > 1e-2);
  doc["seed"] = 8;
  CHECK(TrialParams(Parsed(doc), 0) != TrialParams(s, 0));
}

TEST_CASE("bad sweeps are refused naming the field", "[sweep]") {
  json doc = Sweep();
  doc["space"]["train.optimizer.lr"] = {{"type", "log_uniform"}, {"min", 0}, {"max", 1}};
  CHECK_THAT(AllErrors(doc), Catch::Contains("space.train.optimizer.lr.min: a log_uniform"));
  doc = Sweep();
  doc["space"]["resources.ranks"] = {{"type", "grid"}, {"values", {1, 2}}};
  CHECK_THAT(AllErrors(doc), Catch::Contains("space.resources.ranks:"));
  doc = Sweep();
  doc["space"]["train.lr"] = {{"type", "normal"}};
  CHECK_THAT(AllErrors(doc), Catch::Contains("space.train.lr.type: must be grid, choice"));
  doc = Sweep();
  doc["space"] = json::object();
  CHECK_THAT(AllErrors(doc), Catch::Contains("space: the parameters to search"));
  doc = Sweep();
  doc["space"]["train.optimizer.momentum"] = {{"type", "uniform"}, {"min", 0}, {"max", 1}};
  CHECK_THAT(AllErrors(doc), Catch::Contains("max_trials: required"));
  doc = Sweep();
  doc["objective"] = {{"metric", "test_accuracy"}, {"mode", "best"}};
  CHECK_THAT(AllErrors(doc), Catch::Contains("objective.mode: must be max or min"));
  doc = Sweep();
  doc["early_stopping"]["reduction_factor"] = 1;
  CHECK_THAT(AllErrors(doc), Catch::Contains("early_stopping.reduction_factor: must be"));
  doc = Sweep();
  doc["budget"] = 3;
  CHECK_THAT(AllErrors(doc), Catch::Contains("budget: unknown field"));
}

TEST_CASE("the objective metrics follow the evaluation set and the loss", "[sweep]") {
  CHECK(ObjectiveMetricsOf(Base()) == std::vector<std::string>{"test_accuracy", "test_loss"});
  json val = Base();
  val["data"]["validation_split"] = 0.1;
  CHECK(ObjectiveMetricsOf(val) == std::vector<std::string>{"val_accuracy", "val_loss"});
  json regression = Base();
  regression["train"]["loss"] = "mse";
  CHECK(ObjectiveMetricsOf(regression) == std::vector<std::string>{"test_loss"});
  json csv = Base();
  csv["data"] = {{"type", "csv"}, {"path", "/x.csv"}};
  CHECK(ObjectiveMetricsOf(csv).empty());
}

TEST_CASE("ASHA rungs sit at min_epochs times powers of the reduction factor", "[sweep]") {
  CHECK(RungEpochs({1, 3}, 9) == std::vector<int64_t>{1, 3});
  CHECK(RungEpochs({1, 3}, 10) == std::vector<int64_t>{1, 3, 9});
  CHECK(RungEpochs({2, 2}, 16) == std::vector<int64_t>{2, 4, 8});
  CHECK(RungEpochs({1, 3}, 1).empty());
}

TEST_CASE("ASHA stops trials below the top 1/rf of those that reached a rung", "[sweep]") {
  SweepSpec s = Parsed(Sweep());  // rf 3, rungs at epochs 1 and 3 of 9
  SweepState state;
  // A fake metric stream: trial t's accuracy at epoch e is quality[t] + 0.01 e.
  const double quality[] = {0.80, 0.70, 0.90, 0.60, 0.85, 0.50};
  std::vector<std::string> stopped;
  std::set<int64_t> stopped_trials;
  for (int64_t t = 0; t < 6; ++t) {
    for (int64_t e = 1; e <= 9; ++e) {
      TrialDecision d = ReportTrialEpoch(s, state, t, e, 9, quality[t] + 0.01 * e);
      if (d.stop) {
        stopped.push_back(d.reason);
        stopped_trials.insert(t);
        break;
      }
    }
  }
  // Trial 0 is alone at rung 1; trial 1 (worse than 0) stops; 2 is the best so far and goes
  // on; 3 and 5 are below the top third at rung 1; 4 passes rung 1 (0.86 against a cutoff of
  // 0.843) but not rung 2 (0.88 against 0.897).
  CHECK(stopped_trials == std::set<int64_t>{1, 3, 4, 5});
  CHECK(stopped[0] ==
        "EarlyStopped: rung 1 (epoch 1) test_accuracy 0.71, below the top third (0.7767)");
  CHECK(state.trials[2].epochs == 9);
  CHECK(state.trials[2].best == Approx(0.99));
  CHECK(state.trials[1].epochs == 1);
  CHECK(state.stopped == 4);
  // The state survives a round trip through its stored form.
  SweepState again = SweepState::FromJson(state.ToJson());
  CHECK(again.ToJson() == state.ToJson());
  // A resumed attempt reporting an epoch again decides nothing new.
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 1, 9, 0.1).stop);
}

TEST_CASE("ASHA minimizes a loss", "[sweep]") {
  json doc = Sweep();
  doc["objective"] = {{"metric", "test_loss"}, {"mode", "min"}};
  doc["early_stopping"]["reduction_factor"] = 2;
  SweepSpec s = Parsed(doc);
  SweepState state;
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 1, 9, 0.5).stop);
  TrialDecision worse = ReportTrialEpoch(s, state, 1, 1, 9, 0.9);
  CHECK(worse.stop);
  CHECK(worse.reason == "EarlyStopped: rung 1 (epoch 1) test_loss 0.9, above the top half (0.7)");
  CHECK_FALSE(ReportTrialEpoch(s, state, 2, 1, 9, 0.4).stop);
}

TEST_CASE("a trial's checkpoints fill in what lost epoch reports left out", "[sweep]") {
  SweepSpec s = Parsed(Sweep());
  SweepState state;
  ReportTrialEpoch(s, state, 0, 1, 9, 0.7);
  RecordTrialCheckpoint(s, state, 0, 9, 0.9);
  CHECK(state.trials[0].epochs == 9);
  CHECK(state.trials[0].best == Approx(0.9));
  RecordTrialCheckpoint(s, state, 0, 5, std::nullopt);  // an older one changes nothing
  CHECK(state.trials[0].epochs == 9);
  CHECK(state.trials[0].best == Approx(0.9));
  CHECK(state.stopped == 0);
}

TEST_CASE("mistyped sweeps are refused, never thrown on", "[sweep]") {
  json doc = Sweep();
  doc["name"] = 5;
  doc["objective"] = {{"metric", "test_accuracy"}, {"mode", 1}};
  doc["space"]["train.lr"] = {{"type", 1}};
  doc["space"]["train.seed"] = {{"type", "int_uniform"}, {"min", 0.2}, {"max", 0.8}};
  doc["space"]["train.optimizer.momentum"] = {{"type", "uniform"}, {"min", -1e300}, {"max", 1}};
  doc["space"]["time_limit"] = {{"type", "grid"}, {"values", {60, 120}}};
  doc["early_stopping"] = "asha";
  std::string errors;
  REQUIRE_NOTHROW(errors = AllErrors(doc));
  CHECK_THAT(errors, Catch::Contains("name: must be text"));
  CHECK_THAT(errors, Catch::Contains("objective.mode: must be max or min"));
  CHECK_THAT(errors, Catch::Contains("space.train.lr.type: must be"));
  CHECK_THAT(errors, Catch::Contains("space.train.seed: no whole number"));
  CHECK_THAT(errors, Catch::Contains("space.train.optimizer.momentum: min and max must be within"));
  CHECK_THAT(errors, Catch::Contains("space.time_limit:"));
  CHECK_THAT(errors, Catch::Contains("early_stopping.type"));
  CHECK(ObjectiveMetricsOf(json{{"data", {{"validation_split", "x"}}}, {"train", 1}}).empty());
  CHECK(SweepState::FromJson(json{{"rungs", 3}, {"trials", {{"1", {{"epochs", "x"}}}}}})
            .trials[1]
            .epochs == 0);
}

TEST_CASE("epoch reports out of range decide nothing, and repeats write nothing", "[sweep]") {
  SweepSpec s = Parsed(Sweep());
  SweepState state;
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 0, 9, 0.5).recorded);
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 10, 9, 0.5).recorded);
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 1, 9, 1.5).recorded);  // an accuracy above 1
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 1, 9, std::nan("")).recorded);
  CHECK(ReportTrialEpoch(s, state, 0, 1, 9, 0.5).recorded);
  CHECK_FALSE(ReportTrialEpoch(s, state, 0, 1, 9, 0.5).recorded);
  // The cutoff interpolates without multiplying a difference: the best value is never cut.
  ReportTrialEpoch(s, state, 1, 1, 9, 1.0);
  CHECK_FALSE(ReportTrialEpoch(s, state, 2, 1, 9, 1.0).stop);
}
