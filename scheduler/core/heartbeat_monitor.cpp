#include "scheduler/core/heartbeat_monitor.h"

#include <algorithm>

namespace kiln::core {

std::vector<std::string> HeartbeatMonitor::TakeExpired(Millis now) {
  std::vector<std::string> expired;
  for (const auto& [node, heard] : last_heard_) {
    if (now - heard > timeout_ms_) expired.push_back(node);
  }
  std::sort(expired.begin(), expired.end());
  for (const auto& node : expired) last_heard_.erase(node);
  return expired;
}

}  // namespace kiln::core
