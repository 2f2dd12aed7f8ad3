#include "scheduler/core/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace kiln::core {

using nlohmann::json;

namespace {

constexpr const char* kParamTypes = "grid, choice, uniform, log_uniform or int_uniform";
// The largest magnitude a numeric parameter may have: every whole number up to it is exact in a
// double.
constexpr double kMaxParamMagnitude = 9007199254740992.0;  // 2^53

// `o[key]` when `o` is an object holding a value of the wanted type, else `fallback`: nothing
// from the network throws here.
std::string TextOr(const json& o, const char* key, const std::string& fallback) {
  if (!o.is_object()) return fallback;
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : fallback;
}
double NumberOr(const json& o, const char* key, double fallback) {
  if (!o.is_object()) return fallback;
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<double>() : fallback;
}
int64_t IntOr(const json& o, const char* key, int64_t fallback) {
  if (!o.is_object()) return fallback;
  auto it = o.find(key);
  return it != o.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

bool IsPath(const std::string& path) {
  if (path.empty() || path.front() == '.' || path.back() == '.') return false;
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    (c == '.' && path[i - 1] != '.');
    if (!ok) return false;
  }
  return true;
}

void ParseParam(const std::string& path, const json& p, SweepParam* out,
                std::vector<std::string>* errors) {
  const std::string field = "space." + path;
  if (!IsPath(path)) {
    errors->push_back(field +
                      ": a parameter is a job spec field as a dotted path of lowercase "
                      "names, e.g. \"train.optimizer.lr\"");
    return;
  }
  const std::string top = path.substr(0, path.find('.'));
  if (top == "resources" || top == "depends_on" || top == "serve" || top == "priority" ||
      top == "max_retries" || top == "time_limit") {
    errors->push_back(field +
                      ": resources, depends_on, priority, max_retries, time_limit and "
                      "serve are the sweep's, not a trial's (the scheduler reads them once); "
                      "search over model, data, train or checkpoint fields");
    return;
  }
  if (!p.is_object()) {
    errors->push_back(field + ": must be an object {\"type\": ..., ...}");
    return;
  }
  out->path = path;
  out->type = TextOr(p, "type", "");
  for (const auto& [key, value] : p.items()) {
    if (key != "type" && key != "values" && key != "min" && key != "max") {
      errors->push_back(field + "." + key + ": unknown field; use type, values, min and max");
    }
  }
  if (out->type == "grid" || out->type == "choice") {
    if (!p.contains("values") || !p["values"].is_array() || p["values"].empty() ||
        p["values"].size() > 1000) {
      errors->push_back(field + ".values: a " + out->type +
                        " parameter needs 1-1000 values, e.g. [0.01, 0.1]");
      return;
    }
    out->values.assign(p["values"].begin(), p["values"].end());
    return;
  }
  if (out->type == "uniform" || out->type == "log_uniform" || out->type == "int_uniform") {
    const bool numbers =
        p.contains("min") && p["min"].is_number() && p.contains("max") && p["max"].is_number();
    if (!numbers) {
      errors->push_back(field + ": a " + out->type + " parameter needs numbers min and max");
      return;
    }
    out->min = p["min"].get<double>();
    out->max = p["max"].get<double>();
    if (!(std::fabs(out->min) <= kMaxParamMagnitude) ||
        !(std::fabs(out->max) <= kMaxParamMagnitude)) {
      errors->push_back(field + ": min and max must be within +-2^53");
    } else if (!(out->min <= out->max)) {
      errors->push_back(field + ".max: must be >= min");
    } else if (out->type == "log_uniform" && out->min <= 0) {
      errors->push_back(field + ".min: a log_uniform parameter needs min > 0");
    } else if (out->type == "int_uniform" && std::ceil(out->min) > std::floor(out->max)) {
      errors->push_back(field + ": no whole number lies between min and max");
    }
    return;
  }
  errors->push_back(field + ".type: must be " + kParamTypes + ", got \"" + out->type + "\"");
}

// splitmix64: the same numbers on every platform, unlike the standard distributions.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
double Unit(uint64_t seed, int64_t trial, size_t param) {
  const uint64_t r = Mix(Mix(seed ^ Mix(static_cast<uint64_t>(trial))) + param);
  return static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
}

int64_t GridSize(const SweepSpec& spec) {
  int64_t n = 1;
  for (const auto& p : spec.space) {
    if (p.type == "grid") n = std::min<int64_t>(n * static_cast<int64_t>(p.values.size()), 1 << 30);
  }
  return n;
}

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string TopPart(int64_t rf) {
  switch (rf) {
    case 2:
      return "half";
    case 3:
      return "third";
    case 4:
      return "quarter";
    default:
      return "1/" + std::to_string(rf);
  }
}

}  // namespace

SweepParseResult ParseSweepSpec(const json& doc) {
  SweepParseResult r;
  auto& errors = r.errors;
  SweepSpec& s = r.spec;
  if (!doc.is_object()) {
    errors.push_back("(document): a sweep is a JSON object");
    return r;
  }
  static const std::set<std::string> kKnown = {"name",           "base",          "space",
                                               "seed",           "objective",     "max_trials",
                                               "max_concurrent", "early_stopping"};
  for (const auto& [key, value] : doc.items()) {
    if (!kKnown.count(key)) {
      errors.push_back(key +
                       ": unknown field; a sweep has name, base, space, seed, objective, "
                       "max_trials, max_concurrent and early_stopping");
    }
  }
  s.name = TextOr(doc, "name", "");
  if (doc.contains("name") && (!doc["name"].is_string() || s.name.size() > 128)) {
    errors.push_back("name: must be text of at most 128 characters");
  }
  if (!doc.contains("base") || !doc["base"].is_object()) {
    errors.push_back(
        "base: the job spec every trial starts from (an object; kiln sweep also "
        "takes a file name here)");
  } else {
    s.base = doc["base"];
    if (s.name.empty()) s.name = TextOr(s.base, "name", "sweep");
  }
  if (!doc.contains("space") || !doc["space"].is_object() || doc["space"].empty()) {
    errors.push_back(
        "space: the parameters to search, {\"train.optimizer.lr\": {\"type\": "
        "\"log_uniform\", \"min\": 0.0001, \"max\": 0.1}, ...}");
  } else {
    for (const auto& [path, p] : doc["space"].items()) {
      SweepParam param;
      ParseParam(path, p, &param, &errors);
      if (!param.path.empty()) s.space.push_back(std::move(param));
    }
  }
  if (doc.contains("seed")) {
    if (!doc["seed"].is_number_integer() || doc["seed"].get<int64_t>() < 0) {
      errors.push_back("seed: must be a whole number >= 0");
    } else {
      s.seed = doc["seed"].get<uint64_t>();
    }
  }
  const json objective = doc.contains("objective") ? doc["objective"] : json::object();
  if (!objective.is_object() || !objective.contains("metric") || !objective["metric"].is_string()) {
    errors.push_back(
        "objective: {\"metric\": \"test_accuracy\", \"mode\": \"max\"} (the metric "
        "each epoch reports, and whether more is better)");
  } else {
    s.metric = objective["metric"].get<std::string>();
    const std::string mode =
        objective.contains("mode") ? TextOr(objective, "mode", "(not text)") : "max";
    if (mode != "max" && mode != "min") {
      errors.push_back("objective.mode: must be max or min, got \"" + mode + "\"");
    }
    s.maximize = mode == "max";
    for (const auto& [key, value] : objective.items()) {
      if (key != "metric" && key != "mode") {
        errors.push_back("objective." + key + ": unknown field; use metric and mode");
      }
    }
  }
  bool random = false;
  for (const auto& p : s.space) random = random || p.type != "grid";
  if (doc.contains("max_trials")) {
    if (!doc["max_trials"].is_number_integer() || doc["max_trials"].get<int64_t>() < 1 ||
        doc["max_trials"].get<int64_t>() > kMaxSweepTrials) {
      errors.push_back("max_trials: must be 1-" + std::to_string(kMaxSweepTrials));
    } else {
      s.max_trials = doc["max_trials"].get<int64_t>();
    }
  } else if (random) {
    errors.push_back(
        "max_trials: required when the space has parameters other than grid "
        "(how many trials to draw)");
  } else if (!s.space.empty()) {
    s.max_trials = GridSize(s);
    if (s.max_trials > kMaxSweepTrials) {
      errors.push_back("space: the grid has " + std::to_string(s.max_trials) +
                       " points, over the limit of " + std::to_string(kMaxSweepTrials) +
                       " trials; set max_trials or shrink the grid");
    }
  }
  if (doc.contains("max_concurrent")) {
    if (!doc["max_concurrent"].is_number_integer() || doc["max_concurrent"].get<int64_t>() < 1 ||
        doc["max_concurrent"].get<int64_t>() > kMaxSweepTrials) {
      errors.push_back("max_concurrent: must be 1-" + std::to_string(kMaxSweepTrials));
    } else {
      s.max_concurrent = doc["max_concurrent"].get<int64_t>();
    }
  }
  if (doc.contains("early_stopping")) {
    const json& e = doc["early_stopping"];
    if (TextOr(e, "type", "") != "asha") {
      errors.push_back(
          "early_stopping.type: must be \"asha\" ({\"type\": \"asha\", "
          "\"min_epochs\": 1, \"reduction_factor\": 3})");
    } else {
      AshaSpec asha;
      for (const auto& [key, value] : e.items()) {
        if (key == "type") continue;
        if (key != "min_epochs" && key != "reduction_factor") {
          errors.push_back("early_stopping." + key +
                           ": unknown field; use type, min_epochs and reduction_factor");
        } else if (!value.is_number_integer() ||
                   value.get<int64_t>() < (key == "min_epochs" ? 1 : 2) ||
                   value.get<int64_t>() > 1000) {
          errors.push_back("early_stopping." + key + ": must be a whole number " +
                           (key == "min_epochs" ? "1-1000" : "2-1000"));
        } else {
          (key == "min_epochs" ? asha.min_epochs : asha.reduction_factor) = value.get<int64_t>();
        }
      }
      s.asha = asha;
    }
  }
  return r;
}

json TrialParams(const SweepSpec& spec, int64_t trial) {
  json params = json::object();
  int64_t rest = trial % std::max<int64_t>(1, GridSize(spec));
  // The last grid parameter varies fastest.
  for (size_t i = spec.space.size(); i-- > 0;) {
    const SweepParam& p = spec.space[i];
    if (p.type != "grid") continue;
    const int64_t n = static_cast<int64_t>(p.values.size());
    params[p.path] = p.values[static_cast<size_t>(rest % n)];
    rest /= n;
  }
  for (size_t i = 0; i < spec.space.size(); ++i) {
    const SweepParam& p = spec.space[i];
    const double u = Unit(spec.seed, trial, i);
    if (p.type == "choice") {
      const size_t k = std::min(p.values.size() - 1, static_cast<size_t>(u * p.values.size()));
      params[p.path] = p.values[k];
    } else if (p.type == "uniform") {
      params[p.path] = p.min + u * (p.max - p.min);
    } else if (p.type == "log_uniform") {
      params[p.path] = std::exp(std::log(p.min) + u * (std::log(p.max) - std::log(p.min)));
    } else if (p.type == "int_uniform") {
      const double lo = std::ceil(p.min), hi = std::floor(p.max);
      params[p.path] = static_cast<int64_t>(lo + std::floor(u * (hi - lo + 1)));
    }
  }
  return params;
}

json ApplyParams(const json& base, const json& params) {
  json out = base;
  for (const auto& [path, value] : params.items()) {
    json* node = &out;
    size_t from = 0;
    while (true) {
      const size_t dot = path.find('.', from);
      const std::string key = path.substr(from, dot == std::string::npos ? dot : dot - from);
      if (!node->is_object()) *node = json::object();
      if (dot == std::string::npos) {
        (*node)[key] = value;
        break;
      }
      node = &(*node)[key];
      from = dot + 1;
    }
  }
  return out;
}

std::vector<std::string> ObjectiveMetricsOf(const json& job_spec) {
  if (!job_spec.is_object()) return {};
  const json data = job_spec.contains("data") ? job_spec["data"] : json::object();
  const json train = job_spec.contains("train") ? job_spec["train"] : json::object();
  if (!data.is_object() || !train.is_object()) return {};
  const double split = NumberOr(data, "validation_split", 0.0);
  const std::string type = TextOr(data, "type", "");
  std::string set;
  if (split > 0) {
    set = "val";
  } else if (type != "csv" || !TextOr(data, "test_path", "").empty()) {
    set = "test";
  } else {
    return {};  // nothing to evaluate on
  }
  std::vector<std::string> out;
  if (TextOr(train, "loss", "") != "mse") out.push_back(set + "_accuracy");
  out.push_back(set + "_loss");
  return out;
}

json SweepState::ToJson() const {
  json rung_list = json::array();
  for (const auto& rung : rungs) {
    json r = json::object();
    for (const auto& [trial, value] : rung) r[std::to_string(trial)] = value;
    rung_list.push_back(std::move(r));
  }
  json trial_map = json::object();
  for (const auto& [trial, t] : trials) {
    json v = {{"epochs", t.epochs}, {"stopped", t.stopped}};
    v["best"] = t.best ? json(*t.best) : json();
    trial_map[std::to_string(trial)] = std::move(v);
  }
  return {{"rungs", rung_list}, {"trials", trial_map}, {"stopped", stopped}};
}

SweepState SweepState::FromJson(const json& j) {
  SweepState s;
  if (!j.is_object()) return s;
  auto trial_of = [](const std::string& key) -> std::optional<int64_t> {
    if (key.empty() || key.size() > 9 ||
        !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoll(key);
  };
  const json rungs = j.contains("rungs") && j["rungs"].is_array() ? j["rungs"] : json::array();
  for (const auto& r : rungs) {
    std::map<int64_t, double> rung;
    if (r.is_object()) {
      for (const auto& [key, value] : r.items()) {
        if (auto t = trial_of(key); t && value.is_number()) rung[*t] = value.get<double>();
      }
    }
    s.rungs.push_back(std::move(rung));
  }
  const json trials = j.contains("trials") ? j["trials"] : json::object();
  if (trials.is_object()) {
    for (const auto& [key, v] : trials.items()) {
      auto t = trial_of(key);
      if (!t || !v.is_object()) continue;
      TrialRecord rec;
      rec.epochs = IntOr(v, "epochs", 0);
      rec.stopped = v.contains("stopped") && v["stopped"].is_boolean() && v["stopped"].get<bool>();
      if (v.contains("best") && v["best"].is_number()) rec.best = v["best"].get<double>();
      s.trials[*t] = rec;
    }
  }
  s.stopped = IntOr(j, "stopped", 0);
  return s;
}

std::vector<int64_t> RungEpochs(const AshaSpec& asha, int64_t max_epochs) {
  std::vector<int64_t> out;
  for (int64_t e = asha.min_epochs; e < max_epochs; e *= asha.reduction_factor) {
    out.push_back(e);
    if (e > max_epochs / asha.reduction_factor) break;
  }
  return out;
}

TrialDecision ReportTrialEpoch(const SweepSpec& spec, SweepState& state, int64_t trial,
                               int64_t epoch, int64_t max_epochs, double value) {
  TrialDecision decision;
  // What a trial's rank reports passes through its agent unchecked: a value or an epoch out of
  // range is not the trial's progress, and is dropped.
  const bool accuracy =
      spec.metric.size() > 9 && spec.metric.compare(spec.metric.size() - 9, 9, "_accuracy") == 0;
  if (!std::isfinite(value) || value < 0 || (accuracy && value > 1) || value > 1e12) {
    return decision;
  }
  if (epoch < 1 || (max_epochs > 0 && epoch > max_epochs)) return decision;
  TrialRecord& record = state.trials[trial];
  if (epoch <= record.epochs && record.best) return decision;  // seen (a resumed attempt)
  record.epochs = std::max(record.epochs, epoch);
  decision.recorded = true;
  const bool better = !record.best || (spec.maximize ? value > *record.best : value < *record.best);
  if (better) record.best = value;
  if (!spec.asha || record.stopped) return decision;
  const std::vector<int64_t> rungs = RungEpochs(*spec.asha, max_epochs);
  const auto at = std::find(rungs.begin(), rungs.end(), epoch);
  if (at == rungs.end()) return decision;
  const size_t rung = static_cast<size_t>(at - rungs.begin());
  if (state.rungs.size() <= rung) state.rungs.resize(rung + 1);
  state.rungs[rung][trial] = value;
  // The (1 - 1/rf) quantile of the recorded values, oriented so that more is better.
  std::vector<double> recorded;
  for (const auto& [t, v] : state.rungs[rung]) recorded.push_back(spec.maximize ? v : -v);
  std::sort(recorded.begin(), recorded.end());
  const double q = 1.0 - 1.0 / static_cast<double>(spec.asha->reduction_factor);
  const double pos = q * static_cast<double>(recorded.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(recorded.size() - 1, lo + 1);
  const double f = pos - static_cast<double>(lo);
  const double cutoff = recorded[lo] * (1 - f) + recorded[hi] * f;
  const double mine = spec.maximize ? value : -value;
  if (mine >= cutoff) return decision;
  record.stopped = true;
  ++state.stopped;
  decision.stop = true;
  decision.reason =
      "EarlyStopped: rung " + std::to_string(rung + 1) + " (epoch " + std::to_string(epoch) + ") " +
      spec.metric + " " + Fixed(value) + ", " + (spec.maximize ? "below" : "above") + " the top " +
      TopPart(spec.asha->reduction_factor) + " (" + Fixed(spec.maximize ? cutoff : -cutoff) + ")";
  return decision;
}

void RecordTrialCheckpoint(const SweepSpec& spec, SweepState& state, int64_t trial, int64_t epoch,
                           std::optional<double> value) {
  if (epoch < 0 || epoch > 1000000) return;
  TrialRecord& record = state.trials[trial];
  record.epochs = std::max(record.epochs, epoch);
  if (value && std::isfinite(*value) && *value >= 0 &&
      (!record.best || (spec.maximize ? *value > *record.best : *value < *record.best))) {
    record.best = value;
  }
}

}  // namespace kiln::core
