// `kiln sweep show`: a sweep's leaderboard.
#include <cstdio>
#include <sstream>

#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

std::string Value(const json& v) {
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
    return buf;
  }
  if (v.is_string()) return v.get<std::string>();
  return v.is_null() ? "-" : v.dump();
}

}  // namespace

std::string FormatSweep(const json& job) {
  const json& sweep = job["sweep"];
  const json& objective = sweep["objective"];
  const std::string metric = objective.value("metric", "");
  std::ostringstream out;
  out << "Sweep " << job.value("id", int64_t{0}) << " (" << job.value("name", "")
      << "): " << job.value("state", "") << "\n  " << job.value("reason", "") << "\n"
      << "  objective " << metric << " (" << objective.value("mode", "") << "), "
      << sweep.value("max_trials", int64_t{0}) << " trials, at most "
      << sweep.value("max_concurrent", int64_t{0}) << " at once";
  if (sweep["early_stopping"].is_object()) {
    out << ", ASHA (rungs from epoch " << sweep["early_stopping"].value("min_epochs", 1)
        << ", keeps the top 1/" << sweep["early_stopping"].value("reduction_factor", 3)
        << "): " << sweep.value("stopped", int64_t{0}) << " stopped early";
  }
  out << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"TRIAL", "JOB", "STATE", "EPOCHS", "BEST " + metric, "PARAMETERS"}};
  for (const auto& t : sweep["trials"]) {
    std::string params;
    for (const auto& [path, value] : t["params"].items()) {
      params += (params.empty() ? "" : " ") + path + "=" + Value(value);
    }
    rows.push_back({Value(t["trial"]), Value(t["job_id"]), Value(t["state"]), Value(t["epochs"]),
                    Value(t["best"]), params});
  }
  out << Table(rows);
  const json& best = sweep["best"];
  if (best.is_object()) {
    const std::string id = Value(best["job_id"]);
    out << "\nBest: trial " << Value(best["trial"]) << " (job " << id << "), " << metric << " "
        << Value(best["best"]) << " after " << Value(best["epochs"]) << " epoch(s)";
    if (!best["checkpoint_step"].is_null()) {
      out << ", checkpoint step " << Value(best["checkpoint_step"]) << "\n"
          << "  kiln deploy " << id << " --best --name NAME\n"
          << "  kiln predict " << id << " --input FILE\n";
    } else {
      out << " (no checkpoint stored)\n";
    }
  }
  return out.str();
}

}  // namespace kiln::cli
