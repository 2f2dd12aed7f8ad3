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
  // What is free once every end known here has come: a job that does not fit in it needs what
  // jobs without an end hold, and is unknown without moving the cursor for the jobs behind it.
  FreeCapacity final_free(nodes);
  for (const auto& r : running) {
    if (r.ends_at > 0) final_free.Give(r.shares, r.request);
  }
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
    if (!shares && !final_free.Place(w.request)) {
      out.push_back(std::move(e));
      continue;
    }
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
      // Without a time limit it holds this for good; with one it is back by the end.
      if (w.time_limit_ms <= 0) {
        std::vector<NodeShare> held = *shares;
        for (auto& s : held) s.gpu_ids.clear();
        final_free.Take(held, w.request);
      }
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
  // Reports come from a job's own rank: nonsense gives no estimate rather than an overflow.
  constexpr int64_t kMaxSteps = 1'000'000'000'000;
  constexpr double kMaxAheadMs = 10.0 * 365 * 24 * 3600 * 1000;
  if (total_steps <= 0 || total_steps > kMaxSteps || step < 0 || first_step < 0) return 0;
  if (step >= total_steps) return step_at;
  if (step <= first_step || step_at <= first_at) return 0;
  const double ms_per_step =
      static_cast<double>(step_at - first_at) / static_cast<double>(step - first_step);
  const double ahead = ms_per_step * static_cast<double>(total_steps - step);
  if (!(ahead < kMaxAheadMs)) return 0;
  return step_at + static_cast<Millis>(ahead);
}

}  // namespace kiln::core
