// The agent's Prometheus metrics (kiln-worker --http HOST:PORT serves them at /metrics;
// docs/operations.md lists them): what runs here, its speed and memory, and the GPUs' use.
#include "common/metrics/registry.h"
#include "worker/agent/agent.h"

namespace kiln::agent {

namespace {
constexpr Millis kMetricsEveryMs = 2000;
}  // namespace

void Agent::SetMetricsSink(std::function<void(std::string)> sink) {
  metrics_sink_ = std::move(sink);
  next_metrics_at_ = 0;
  // NVML's start may take seconds (no persistence mode): here, before the loop runs.
  if (!gpu_stats_) gpu_stats_ = GpuStats::Open();
}

void Agent::PublishMetrics(Millis now) {
  next_metrics_at_ = now + kMetricsEveryMs;
  if (!gpu_stats_) gpu_stats_ = GpuStats::Open();
  metrics::Registry r;
  r.DeclareGauge("kiln_agent_connected", "1 while the agent is registered with the scheduler.");
  r.DeclareGauge("kiln_agent_slots",
                 "The node's slots, and the ranks its running attempts were given here.");
  r.DeclareGauge("kiln_agent_attempts_running", "Attempts running on this node.");
  r.DeclareGauge("kiln_agent_job_ranks", "Rank processes of each attempt running here.");
  r.DeclareGauge("kiln_agent_job_rss_bytes",
                 "Resident memory of each attempt's ranks on this node, summed.");
  r.DeclareGauge("kiln_agent_job_samples_per_second",
                 "Each job's training speed (all ranks), from rank 0's latest report (on the node "
                 "that runs rank 0).");
  r.DeclareGauge("kiln_agent_gpu_utilization_ratio",
                 "Each GPU's busy fraction over NVML's last sample period (0 to 1).");
  r.DeclareGauge("kiln_agent_gpu_memory_used_bytes", "Each GPU's memory in use.");
  r.DeclareGauge("kiln_agent_gpu_memory_total_bytes", "Each GPU's memory.");
  const metrics::Labels node = {{"node", options_.name}};
  r.Set("kiln_agent_connected", node, registered_ ? 1 : 0);
  r.Set("kiln_agent_attempts_running", node, static_cast<double>(runs_.size()));
  int64_t used = 0;
  for (auto& [key, run] : runs_) {
    const JobRun::Stats stats = run->CurrentStats(now);
    used += stats.slots_here;
    const metrics::Labels labels = {{"node", options_.name},
                                    {"job", std::to_string(key.first)},
                                    {"attempt", std::to_string(key.second)}};
    r.Set("kiln_agent_job_ranks", labels, stats.ranks);
    r.Set("kiln_agent_job_rss_bytes", labels, static_cast<double>(stats.rss_bytes));
    if (stats.samples_per_s >= 0) {
      r.Set("kiln_agent_job_samples_per_second", labels, stats.samples_per_s);
    }
  }
  r.Set("kiln_agent_slots", {{"node", options_.name}, {"kind", "total"}},
        static_cast<double>(options_.slots));
  r.Set("kiln_agent_slots", {{"node", options_.name}, {"kind", "used"}}, static_cast<double>(used));
  for (const GpuStat& gpu : gpu_stats_->Read()) {
    const metrics::Labels labels = {{"node", options_.name}, {"gpu", std::to_string(gpu.index)}};
    r.Set("kiln_agent_gpu_utilization_ratio", labels, gpu.utilization);
    r.Set("kiln_agent_gpu_memory_used_bytes", labels, static_cast<double>(gpu.memory_used_bytes));
    r.Set("kiln_agent_gpu_memory_total_bytes", labels, static_cast<double>(gpu.memory_total_bytes));
  }
  metrics_sink_(r.Render());
}

}  // namespace kiln::agent
