// Failure detector: remembers when each worker was last heard and says which went silent.
// Pure: the caller passes the current monotonic time.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"

namespace kiln::core {

class HeartbeatMonitor {
 public:
  explicit HeartbeatMonitor(Millis timeout_ms) : timeout_ms_(timeout_ms) {}

  void Heard(const std::string& node, Millis now) { last_heard_[node] = now; }
  void Forget(const std::string& node) { last_heard_.erase(node); }
  bool Knows(const std::string& node) const { return last_heard_.count(node) > 0; }

  // Nodes silent for longer than the timeout, sorted by name; they are forgotten, so each silent
  // node is reported once until it is heard again.
  std::vector<std::string> TakeExpired(Millis now);

 private:
  Millis timeout_ms_;
  std::unordered_map<std::string, Millis> last_heard_;
};

}  // namespace kiln::core
