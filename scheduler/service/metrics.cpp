// The scheduler's Prometheus metrics (served at /metrics by the HTTP server main.cpp starts;
// docs/operations.md lists them). Counters count since this process started.
#include <map>
#include <utility>

#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

namespace {
const std::vector<double> kRequestBounds = {0.0001, 0.0005, 0.001, 0.005, 0.01,
                                            0.05,   0.1,    0.5,   1,     5};
const std::vector<double> kPassBounds = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025,
                                         0.05,   0.1,    0.25,  0.5,   1,    2.5};
const std::vector<double> kWaitBounds = {1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400};
}  // namespace

void SchedulerService::DeclareMetrics() {
  metrics_.DeclareGauge("kiln_jobs", "Unfinished jobs by state and user.");
  metrics_.DeclareCounter("kiln_jobs_finished_total",
                          "Jobs that reached a final state (COMPLETED, FAILED, CANCELLED).");
  metrics_.DeclareCounter("kiln_submits_total", "Jobs submitted (duplicates not counted).");
  metrics_.DeclareGauge("kiln_nodes", "Nodes by state: UP, DOWN or DRAINED (an UP node drained).");
  metrics_.DeclareGauge("kiln_node_slots", "Slots of UP nodes, and how many are in use.");
  metrics_.DeclareHistogram("kiln_queue_wait_seconds",
                            "From submit to the start of a job's attempt.", kWaitBounds);
  metrics_.DeclareHistogram("kiln_scheduling_pass_seconds", "Duration of a scheduling pass.",
                            kPassBounds);
  metrics_.DeclareCounter("kiln_requests_total", "Messages handled, by type.");
  metrics_.DeclareHistogram("kiln_request_seconds", "Time to handle a message, by type.",
                            kRequestBounds);
  metrics_.DeclareGauge("kiln_checkpoint_bytes",
                        "Bytes of checkpoints stored, by storage: scheduler (its blob store, "
                        "each blob once) or shared_fs.");
  metrics_.DeclareGauge("kiln_service_replicas",
                        "Replicas of each deployed service: wanted, live (pending or running), "
                        "ready (answering).");
  metrics_.DeclareGauge("kiln_service_requests_per_second",
                        "Requests/s the ready replicas of each service answered, as they report.");
  metrics_.DeclareGauge("kiln_read_only",
                        "1 while the scheduler cannot write its database (a full disk) and "
                        "refuses changes.");
}

void SchedulerService::CountTransition(const JobRecord& job, Millis now) {
  if (core::IsTerminal(job.state)) {
    metrics_.Add("kiln_jobs_finished_total", {{"state", core::JobStateName(job.state)}});
  } else if (job.state == core::JobState::kRunning && job.submitted_at > 0) {
    metrics_.Observe("kiln_queue_wait_seconds", {},
                     static_cast<double>(std::max<Millis>(0, now - job.submitted_at)) / 1000);
  }
}

void SchedulerService::SetMetricsSink(std::function<void(std::string)> sink) {
  metrics_sink_ = std::move(sink);
  next_metrics_at_ = 0;
}

void SchedulerService::PublishMetrics() {
  next_metrics_at_ = clock_.MonotonicMs() + kMetricsEveryMs;
  if (!metrics_sink_) return;
  metrics_.ClearGauge("kiln_jobs");
  std::map<std::pair<std::string, int32_t>, int64_t> jobs;  // (state, user index) -> count
  for (const auto& [order, job] : jobs_.pending()) {        // an array: each task not started
    jobs[{std::string("PENDING"), job->queued.user}] +=
        job->array ? job->array->pending.Count() : 1;
  }
  for (int64_t id : jobs_.running()) {
    if (const ActiveJob* job = jobs_.Find(id)) ++jobs[{std::string("RUNNING"), job->queued.user}];
  }
  const std::vector<std::string>& users = jobs_.user_names();
  for (const auto& [key, count] : jobs) {
    const std::string user =
        key.second >= 0 && static_cast<size_t>(key.second) < users.size() ? users[key.second] : "?";
    metrics_.Set("kiln_jobs", {{"state", key.first}, {"user", user}}, static_cast<double>(count));
  }
  std::map<std::string, int64_t> nodes = {{"UP", 0}, {"DOWN", 0}, {"DRAINED", 0}};
  int64_t slots = 0, used = 0;
  for (const auto& [name, w] : workers_) {
    if (!w.up) {
      ++nodes["DOWN"];
      continue;
    }
    ++nodes[w.record.drained ? "DRAINED" : "UP"];
    slots += w.record.slots;
    for (const auto& [key, p] : placements_.On(name)) used += p.slots;
  }
  metrics_.ClearGauge("kiln_nodes");
  for (const auto& [state, count] : nodes) {
    metrics_.Set("kiln_nodes", {{"state", state}}, static_cast<double>(count));
  }
  metrics_.Set("kiln_node_slots", {{"kind", "total"}}, static_cast<double>(slots));
  metrics_.Set("kiln_node_slots", {{"kind", "used"}}, static_cast<double>(used));
  metrics_.Set("kiln_read_only", {}, read_only_ ? 1 : 0);
  metrics_.ClearGauge("kiln_service_replicas");
  metrics_.ClearGauge("kiln_service_requests_per_second");
  std::map<std::string, std::pair<int64_t, int64_t>> replicas;  // live, ready
  std::map<std::string, double> rates;
  if (!services_.all().empty())
    jobs_.ForEach([&](int64_t id, const ActiveJob& job) {
      if (job.service.empty()) return;
      ++replicas[job.service].first;
      if (!ReplicaReady(id, job)) return;
      ++replicas[job.service].second;
      rates[job.service] += serve_status_.at(id).report.value("requests_per_s", 0.0);
    });
  for (const auto& [name, s] : services_.all()) {
    metrics_.Set("kiln_service_replicas", {{"service", name}, {"kind", "wanted"}},
                 static_cast<double>(s.replicas));
    metrics_.Set("kiln_service_replicas", {{"service", name}, {"kind", "live"}},
                 static_cast<double>(replicas[name].first));
    metrics_.Set("kiln_service_replicas", {{"service", name}, {"kind", "ready"}},
                 static_cast<double>(replicas[name].second));
    metrics_.Set("kiln_service_requests_per_second", {{"service", name}}, rates[name]);
  }
  if (clock_.MonotonicMs() >= next_checkpoint_bytes_at_) {  // a scan: every 10 s is enough
    next_checkpoint_bytes_at_ = clock_.MonotonicMs() + 10000;
    if (auto stored = store_->CheckpointBytesStored(); stored.ok()) {
      metrics_.Set("kiln_checkpoint_bytes", {{"storage", "scheduler"}},
                   static_cast<double>(stored->scheduler));
      metrics_.Set("kiln_checkpoint_bytes", {{"storage", "shared_fs"}},
                   static_cast<double>(stored->shared_fs));
    }
  }
  metrics_sink_(metrics_.Render());
}

}  // namespace kiln::service
