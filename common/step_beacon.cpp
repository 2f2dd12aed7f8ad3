#include "common/step_beacon.h"

#include <cinttypes>
#include <cstdio>

namespace kiln {

std::string StepBeaconDir(const std::string& run_dir) { return run_dir + "/steps"; }

std::string StepBeaconPath(const std::string& run_dir, int rank) {
  return StepBeaconDir(run_dir) + "/rank-" + std::to_string(rank);
}

std::optional<int> RankOfStepBeacon(const std::string& file_name) {
  const std::string prefix = "rank-";
  if (file_name.size() <= prefix.size() || file_name.size() > prefix.size() + 6 ||
      file_name.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  int rank = 0;
  for (size_t i = prefix.size(); i < file_name.size(); ++i) {
    const char c = file_name[i];
    if (c < '0' || c > '9') return std::nullopt;
    rank = rank * 10 + (c - '0');
  }
  return rank;
}

std::string FormatStepBeacon(const StepBeacon& b) {
  char line[96];
  std::snprintf(line, sizeof line, "step %-20" PRId64 " beat %-20" PRId64 " waiting %d\n", b.step,
                b.beat, b.waiting ? 1 : 0);
  return line;
}

std::optional<StepBeacon> ParseStepBeacon(const std::string& text) {
  if (text.size() > kStepBeaconMaxBytes) return std::nullopt;
  StepBeacon b;
  long long step = 0;
  long long beat = 0;
  int waiting = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "step %lld beat %lld waiting %d%n", &step, &beat, &waiting,
                  &consumed) != 3) {
    return std::nullopt;
  }
  for (size_t i = static_cast<size_t>(consumed); i < text.size(); ++i) {
    if (text[i] != ' ' && text[i] != '\n') return std::nullopt;
  }
  if (step < 0 || beat < 0 || (waiting != 0 && waiting != 1)) return std::nullopt;
  b.step = step;
  b.beat = beat;
  b.waiting = waiting == 1;
  return b;
}

}  // namespace kiln
