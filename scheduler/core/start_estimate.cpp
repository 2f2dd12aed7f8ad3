#include "scheduler/core/start_estimate.h"

#include <algorithm>
#include <optional>
#include <queue>
#include <set>

namespace kiln::core {

namespace {

struct Release {
  Millis at = 0;
  int64_t id = 0;
  std::vector<NodeShare> shares;
  const ResourceRequest* request = nullptr;
  bool operator>(const Release& o) const { return at != o.at ? at > o.at : id > o.id; }
};

}  // namespace

std::vector<StartEstimate> EstimateStarts(const std::vector<NodeState>& nodes,
                                          const std::vector<EstimateRunning>& running,
                                          const std::vector<EstimateWaiting>& waiting, Millis now,
                                          size_t max_jobs) {
  FreeCapacity free(nodes);
  std::priority_queue<Release, std::vector<Release>, std::greater<Release>> releases;
  for (const auto& r : running) {
    if (r.ends_at > 0) releases.push({std::max(r.ends_at, now), r.id, r.shares, &r.request});
  }
  Millis cursor = now;
  std::vector<int64_t> last_batch;  // the jobs whose end moved the cursor last
  std::vector<StartEstimate> out;
  out.reserve(std::min(max_jobs, waiting.size()));
  for (const auto& w : waiting) {
    if (out.size() >= max_jobs) break;
    StartEstimate e;
    e.job_id = w.id;
    if (w.blocked) {
      out.push_back(std::move(e));
      continue;
    }
    std::optional<std::vector<NodeShare>> shares = free.Place(w.request);
    std::set<int64_t> after;
    while (!shares && !releases.empty()) {
      const Millis at = releases.top().at;
      last_batch.clear();
      while (!releases.empty() && releases.top().at == at) {
        const Release& r = releases.top();
        free.Give(r.shares, *r.request);
        after.insert(r.id);
        last_batch.push_back(r.id);
        releases.pop();
      }
      cursor = std::max(cursor, at);
      shares = free.Place(w.request);
    }
    if (shares) {
      free.Take(*shares, w.request);
      e.at = cursor;
      // Fitting at a cursor an earlier job moved: the ends that moved it made the room.
      if (after.empty() && cursor > now) after.insert(last_batch.begin(), last_batch.end());
      e.after.assign(after.begin(), after.end());
      for (const auto& s : *shares) e.nodes.push_back(s.node);
      if (w.time_limit_ms > 0) releases.push({cursor + w.time_limit_ms, w.id, *shares, &w.request});
    }
    out.push_back(std::move(e));
  }
  return out;
}

Millis ExpectedEndFromProgress(int64_t first_step, Millis first_at, int64_t step, Millis step_at,
                               int64_t total_steps) {
  if (total_steps > 0 && step >= total_steps) return step_at;
  if (step <= first_step || step_at <= first_at) return 0;
  const double ms_per_step =
      static_cast<double>(step_at - first_at) / static_cast<double>(step - first_step);
  return step_at + static_cast<Millis>(ms_per_step * static_cast<double>(total_steps - step));
}

}  // namespace kiln::core
