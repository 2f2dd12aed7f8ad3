// A pending job's start estimate as kiln queue (START) and kiln show print it.
#include <ctime>
#include <string>
#include <vector>

#include "common/clock.h"
#include "scheduler/cli/output.h"

namespace kiln::cli {

using nlohmann::json;

std::string FormatStartEstimate(const json& job, bool explain) {
  if (!job.contains("start_estimate") || !job["start_estimate"].is_object()) return "-";
  const json& e = job["start_estimate"];
  if (!e.contains("at") || !e["at"].is_number_integer()) {
    return explain ? "unknown: it needs what jobs without a time limit (or progress) hold"
                   : "unknown";
  }
  const Millis at = e["at"].get<Millis>();
  const Millis now = SystemClock().WallMs();
  std::time_t seconds = static_cast<std::time_t>(at / 1000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char when[32];
  std::strftime(when, sizeof when, at - now > 20 * 3600 * 1000 ? "%m-%d %H:%M" : "%H:%M", &tm);
  std::string out = std::string(explain ? "est. " : "~") + when;
  if (!explain) return out;
  std::vector<std::string> after, nodes;
  for (const auto& id : e.value("after", json::array())) after.push_back(id.dump());
  for (const auto& n : e.value("nodes", json::array())) {
    if (n.is_string()) nodes.push_back(n.get<std::string>());
  }
  auto list = [](const std::vector<std::string>& items) {
    std::string s;
    for (size_t i = 0; i < items.size(); ++i) {
      s += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + items[i];
    }
    return s;
  };
  if (!after.empty()) {
    out += ": after job" + std::string(after.size() > 1 ? "s " : " ") + list(after) + " end" +
           (after.size() > 1 ? "" : "s");
  } else if (at <= now + 1000) {
    out += ": now, as soon as the next pass places it";
  }
  if (!nodes.empty()) out += (after.empty() && at > now + 1000 ? ": on " : ", on ") + list(nodes);
  return out;
}

}  // namespace kiln::cli
