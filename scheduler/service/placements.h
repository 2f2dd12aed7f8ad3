// The placement table: what each attempt holds on each node, from its placement until its exit
// is reported there or the node is declared DOWN. The one owner of that fact; every change is
// written through to the store (table `placements`) in the turn's transaction, and Load()
// rebuilds the table after a restart, so that a restarted scheduler knows which slots, memory and
// GPUs are taken, which checkpoint each attempt resumes from, which launches are still
// unacknowledged (and are resent), and which requeued jobs wait for an old attempt's exit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/protocol/messages.h"
#include "common/status.h"
#include "scheduler/service/store.h"

namespace kiln::service {

using AttemptKey = std::pair<int64_t, int64_t>;  // job id, attempt

struct Placement {
  int64_t ranks = 0;
  int64_t slots = 0;
  int64_t memory = 0;
  std::vector<int> gpu_ids;
  std::pair<int64_t, int64_t> resume{0, -1};  // checkpoint (job, step) it resumes from
  // The launch, resent until the worker acknowledges it (reports the attempt or its start).
  // Absent for attempts the scheduler did not launch (an unwanted attempt a worker reported).
  std::optional<protocol::LaunchJob> launch;
  bool acknowledged = false;
  bool stop_requested = false;  // kill sent; repeated while the worker still reports it
  // A requeued job is held until this placement (its old attempt's leader) ends: by then the
  // checkpoint saved on the way out is registered, and the next attempt resumes from it.
  bool job_waits_for_exit = false;
  // Not persisted (monotonic times of this process; zero after a restart).
  Millis launched_at = 0;
  Millis launch_sent_at = 0;
  int launch_sends = 0;
};

// Codec of a placement's persisted fields (pure; unit-tested).
nlohmann::json EncodePlacement(const Placement& placement);
Result<Placement> DecodePlacement(const nlohmann::json& state);

class PlacementTable {
 public:
  using OnNode = std::map<AttemptKey, Placement>;

  explicit PlacementTable(Store& store) : store_(store) {}

  // Replaces the table with what the store holds.
  Status Load();

  const std::map<std::string, OnNode>& all() const { return nodes_; }
  const OnNode& On(const std::string& node) const;
  const Placement* Find(const std::string& node, const AttemptKey& key) const;
  bool Has(const std::string& node, const AttemptKey& key) const {
    return Find(node, key) != nullptr;
  }

  // Each change below is written to the store before the table changes; on an error neither
  // changes.
  Status Put(const std::string& node, const AttemptKey& key, const Placement& placement);
  Status Acknowledge(const std::string& node, const AttemptKey& key);
  Status RequestStop(const std::string& node, const AttemptKey& key);
  Status SetJobWaitsForExit(const std::string& node, const AttemptKey& key);
  // Returns the placement removed, if there was one.
  Result<std::optional<Placement>> Erase(const std::string& node, const AttemptKey& key);
  Result<OnNode> EraseNode(const std::string& node);

  // Resend bookkeeping, in memory only.
  void NoteLaunchSent(const std::string& node, const AttemptKey& key, Millis now);

 private:
  Placement* FindMutable(const std::string& node, const AttemptKey& key);
  Status Save(const std::string& node, const AttemptKey& key, const Placement& placement);
  // Sets a persisted flag of an existing placement (a no-op when absent or already set).
  Status SetFlag(const std::string& node, const AttemptKey& key, bool Placement::*flag);

  Store& store_;
  std::map<std::string, OnNode> nodes_;
};

}  // namespace kiln::service
