// The scheduler's side of jobs' metrics history: which progress reports are kept (decided by
// scheduler/core/metric_history.h, stored in the metric_history table) and the view that
// `kiln metrics`, `kiln show`'s sparkline and the dashboard's curves read.
#include <spdlog/spdlog.h>

#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

void SchedulerService::RecordMetricHistory(ActiveJob& job, const json& report) {
  auto series = core::SeriesOfReport(report);
  if (!series) return;
  const std::string name = core::HistorySeriesName(*series);
  auto& state = job.history[static_cast<int>(*series)];
  const int64_t job_id = job.queued.id;
  if (!state) {
    auto ordinals = store_->MetricOrdinals(job_id, name);
    if (!ordinals.ok()) {
      spdlog::error("cannot read the metrics history of job {}: {}", job_id,
                    ordinals.status().ToString());
      return;
    }
    state = core::SeriesStateFrom(*ordinals);
  }
  const core::HistoryDecision decision = core::NextHistoryPoint(*state);
  if (!decision.keep) return;
  MetricPoint point{name, decision.ordinal, job.attempt, clock_.WallMs(),
                    core::HistoryPointOf(report)};
  Status added = store_->AddMetricPoint(job_id, point);
  if (!added.ok()) {
    spdlog::error("cannot store the metrics history of job {}: {}", job_id, added.ToString());
    return;
  }
  if (decision.thin_to_stride) {
    auto left = store_->ThinMetricHistory(job_id, name, *decision.thin_to_stride);
    if (left.ok()) core::ThinnedTo(*state, *left);
  }
}

void SchedulerService::OnMetricsHistory(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::MetricsHistoryRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, record);
  // Metrics are the owner's, like in show.
  KILN_PERMIT_OR_REPLY(
      core::MayActOnJob(req.caller, core::JobAction::kShow, record.id, record.user), "metrics",
      "job " + std::to_string(record.id));
  auto points = store_->MetricHistory(request.job_id);
  KILN_OK_OR_REPLY(points);
  // "latest": the job's newest merged report (what show prints), which the kept points may
  // not include yet; the curves end with it.
  json view = {{"job_id", record.id},
               {"step", json::array()},
               {"epoch", json::array()},
               {"latest", core::HistoryPointOf(record.progress)}};
  for (auto& p : *points) {
    json out = std::move(p.point);
    out["time"] = p.time;  // the scheduler's, whatever a report called its own fields
    out["attempt"] = p.attempt;
    view[p.series == "epoch" ? "epoch" : "step"].push_back(std::move(out));
  }
  Reply(req, protocol::DataReply{std::move(view)});
}

}  // namespace kiln::service
