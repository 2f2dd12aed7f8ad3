#include "scheduler/service/job_views.h"

#include "common/job_array.h"

namespace kiln::service {

using nlohmann::json;

json JobSummaryView(const JobRecord& j) {
  json view = {{"id", j.id},
               {"name", j.name},
               {"user", j.user},
               {"state", core::JobStateName(j.state)},
               {"reason", j.reason},
               {"priority", j.priority},
               {"held", j.held},
               {"time_limit_s", j.time_limit_ms / 1000},
               {"depends_on", j.depends_on},
               {"attempt", j.attempt},
               {"max_retries", j.max_retries},
               {"ranks", j.ranks},
               {"gpus_per_rank", j.gpus_per_rank},
               {"node", j.node},
               {"allocation", j.allocation},
               {"submitted_at", j.submitted_at},
               {"started_at", j.started_at},
               {"finished_at", j.finished_at},
               {"exit_code", j.exit_code},
               {"metrics", j.progress}};
  if (j.array_job > 0) {
    view["array_job"] = j.array_job;
    view["array_index"] = j.array_index;
  }
  if (j.array.is_object()) {
    view["array"] = j.array;
    auto pending = IndexSet::Parse(j.array.value("pending", ""));
    view["array"]["pending_count"] = pending.ok() ? pending->Count() : 0;
  }
  return view;
}

json CheckpointView(const CheckpointRecord& c) {
  return {{"step", c.step},       {"epoch", c.epoch},   {"attempt", c.attempt},
          {"metrics", c.metrics}, {"bytes", c.bytes},   {"sha256", c.sha256},
          {"created_at", c.created_at},
          {"storage", c.path.empty() ? "scheduler" : "shared_fs"},
          {"path", c.path}};
}

json JobDetailView(const JobRecord& job, const std::vector<JobEventRecord>& events,
                   const std::vector<AttemptRecord>& attempts,
                   const std::vector<CheckpointRecord>& checkpoints) {
  json view = JobSummaryView(job);
  json ev = json::array();
  for (const auto& e : events) {
    ev.push_back({{"time", e.time}, {"from", e.from_state}, {"to", e.to_state},
                  {"reason", e.reason}});
  }
  json ck = json::array();
  int64_t checkpoint_bytes = 0;
  for (const auto& c : checkpoints) {
    ck.push_back(CheckpointView(c));
    checkpoint_bytes += c.bytes;
  }
  view["events"] = std::move(ev);
  json at = json::array();
  for (const auto& a : attempts) {
    at.push_back({{"attempt", a.attempt}, {"nodes", a.nodes}, {"started_at", a.started_at},
                  {"ended_at", a.ended_at}, {"outcome", a.outcome}, {"exit_code", a.exit_code},
                  {"reason", a.reason}, {"resumed_from_step", a.resumed_from_step}});
  }
  view["attempts"] = std::move(at);
  view["checkpoints"] = std::move(ck);
  view["checkpoint_bytes"] = checkpoint_bytes;  // disk used by this job's checkpoints
  if (job.resume_job > 0) view["resumed_from"] = {{"job_id", job.resume_job}, {"step", job.resume_step}};
  view["spec"] = job.spec;
  return view;
}

json NodeView(const NodeRecord& n, const NodeUse& use) {
  std::string state = n.state;
  if (n.state == "UP" && n.drained) state = use.attempts > 0 ? "DRAINING" : "DRAINED";
  return {{"name", n.name},
          {"state", state},
          {"drain_reason", n.drain_reason},
          {"labels", n.labels},
          {"slots", n.slots},
          {"used_slots", use.slots},
          {"gpus", n.gpus},
          {"used_gpus", use.gpus},
          {"memory_bytes", n.memory_bytes},
          {"used_memory_bytes", use.memory},
          {"registered_at", n.registered_at},
          {"last_seen_at", n.last_seen_at}};
}

}  // namespace kiln::service
