// Hyperparameter sweeps (kiln sweep SWEEP.json): the sweep spec, each trial's parameters, and the
// ASHA early-stopping decisions. Pure: no I/O, no clock; a trial's parameters depend only on the
// spec and its number, so they are never stored. See docs/sweeps.md.
//
// ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020), in its
// stopping form: rungs are at epochs min_epochs * rf^k below a trial's last epoch. A trial that
// reports the objective at a rung's epoch is recorded there and stopped if its value is worse
// than the (1 - 1/rf) quantile of every value recorded at that rung so far, itself included: only
// the top 1/rf of the trials that reached a rung go on. Decisions are asynchronous: the first
// trials to reach a rung are compared with fewer others.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln::core {

// The most trials one sweep may have.
constexpr int64_t kMaxSweepTrials = 1000;

struct SweepParam {
  std::string path;                    // a dotted path into the job spec: "train.optimizer.lr"
  std::string type;                    // grid | choice | uniform | log_uniform | int_uniform
  std::vector<nlohmann::json> values;  // grid, choice
  double min = 0, max = 0;             // uniform, log_uniform, int_uniform (inclusive)
};

struct AshaSpec {
  int64_t min_epochs = 1;
  int64_t reduction_factor = 3;
};

struct SweepSpec {
  std::string name;
  nlohmann::json base;            // the job spec every trial starts from
  std::vector<SweepParam> space;  // by path
  uint64_t seed = 0;
  std::string metric = "test_accuracy";
  bool maximize = true;
  int64_t max_trials = 0;
  int64_t max_concurrent = 2;
  std::optional<AshaSpec> asha;
};

struct SweepParseResult {
  SweepSpec spec;
  std::vector<std::string> errors;  // each names its field: "space.train.optimizer.lr.min: ..."
  bool ok() const { return errors.empty(); }
};
// Reads and checks the sweep document (not the trials' job specs: the caller parses those).
SweepParseResult ParseSweepSpec(const nlohmann::json& document);

// Trial `trial`'s parameters, {"path": value, ...}: grid parameters walk their product (the last
// one fastest, trial modulo the product's size), the others are drawn from `seed` and the trial.
nlohmann::json TrialParams(const SweepSpec& spec, int64_t trial);
// `base` with each dotted path set to its value (objects made as needed).
nlohmann::json ApplyParams(const nlohmann::json& base, const nlohmann::json& params);
// The metrics kiln-train reports at each epoch's end for this job spec (test_* or val_*).
std::vector<std::string> ObjectiveMetricsOf(const nlohmann::json& job_spec);

// ASHA's record: per rung, the trials recorded there and their values; per trial, its best value
// and epochs reported so far.
struct TrialRecord {
  std::optional<double> best;
  int64_t epochs = 0;
  bool stopped = false;
};
struct SweepState {
  std::vector<std::map<int64_t, double>> rungs;  // rung -> trial -> value
  std::map<int64_t, TrialRecord> trials;
  int64_t stopped = 0;
  nlohmann::json ToJson() const;
  static SweepState FromJson(const nlohmann::json& j);
};

// The epochs of the rungs for a trial of `max_epochs` epochs.
std::vector<int64_t> RungEpochs(const AshaSpec& asha, int64_t max_epochs);

struct TrialDecision {
  bool recorded = false;  // the report changed the record (else nothing needs writing)
  bool stop = false;
  std::string reason;  // "EarlyStopped: rung 2 (epoch 3) test_accuracy 0.842, below the top
                       // third (0.871)"
};
// Records trial's objective `value` at the end of `epoch` (of max_epochs) and decides whether it
// goes on. A report of an epoch already recorded (a resumed attempt) changes nothing.
TrialDecision ReportTrialEpoch(const SweepSpec& spec, SweepState& state, int64_t trial,
                               int64_t epoch, int64_t max_epochs, double value);

// What a trial's checkpoint says it reached (epochs done, and the objective then, if reported):
// fills in what lost epoch reports left out. No ASHA decision.
void RecordTrialCheckpoint(const SweepSpec& spec, SweepState& state, int64_t trial, int64_t epoch,
                           std::optional<double> value);

}  // namespace kiln::core
