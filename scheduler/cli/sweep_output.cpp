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
  // A scheduler's reply, read without assuming its shape (a missing key reads as null).
  auto at = [](const json& o, const char* key) -> json {
    return o.is_object() && o.contains(key) ? o[key] : json();
  };
  auto text = [&](const json& o, const char* key) {
    const json v = at(o, key);
    return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string() : v.dump();
  };
  const json sweep = at(job, "sweep");
  const json objective = at(sweep, "objective");
  const std::string metric = text(objective, "metric");
  std::ostringstream out;
  out << "Sweep " << text(job, "id") << " (" << text(job, "name") << "): " << text(job, "state")
      << "\n  " << text(job, "reason") << "\n"
      << "  objective " << metric << " (" << text(objective, "mode") << "), "
      << text(sweep, "max_trials") << " trials, at most " << text(sweep, "max_concurrent")
      << " at once";
  if (const json asha = at(sweep, "early_stopping"); asha.is_object()) {
    out << ", ASHA (rungs from epoch " << text(asha, "min_epochs") << ", keeps the top 1/"
        << text(asha, "reduction_factor") << "): " << text(sweep, "stopped") << " stopped early";
  }
  out << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"TRIAL", "JOB", "STATE", "EPOCHS", "BEST " + metric, "PARAMETERS"}};
  const json trials = at(sweep, "trials");
  for (const auto& t : trials.is_array() ? trials : json::array()) {
    std::string params;
    const json p = at(t, "params");
    if (p.is_object()) {
      for (const auto& [path, value] : p.items()) {
        params += (params.empty() ? "" : " ") + path + "=" + Value(value);
      }
    }
    rows.push_back({Value(at(t, "trial")), Value(at(t, "job_id")), Value(at(t, "state")),
                    Value(at(t, "epochs")), Value(at(t, "best")), params});
  }
  out << Table(rows);
  const json best = at(sweep, "best");
  if (best.is_object()) {
    const std::string id = Value(at(best, "job_id"));
    out << "\nBest: trial " << Value(at(best, "trial")) << " (job " << id << "), " << metric << " "
        << Value(at(best, "best")) << " after " << Value(at(best, "epochs")) << " epoch(s)";
    if (!at(best, "checkpoint_step").is_null()) {
      out << ", checkpoint step " << Value(at(best, "checkpoint_step")) << "\n"
          << "  kiln deploy " << id << " --best --name NAME\n"
          << "  kiln predict " << id << " --input FILE\n";
    } else {
      out << " (no checkpoint stored)\n";
    }
  }
  return out.str();
}

}  // namespace kiln::cli
