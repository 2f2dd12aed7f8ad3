// Requests from the kiln CLI. Each handler decodes its body, reads or changes state inside the
// turn's transaction, and queues exactly one reply.
#include <spdlog/spdlog.h>

#include "common/job_spec.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/job_views.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using protocol::Envelope;
using nlohmann::json;

namespace {
Status JobNotFound(int64_t id) { return Status::NotFound("no job with id " + std::to_string(id)); }
}  // namespace

void SchedulerService::OnSubmit(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::SubmitRequest, request);
  if (request.request_id.empty() || request.request_id.size() > 128) {
    return ReplyError(peer, e.id,
                      Status::InvalidArgument("body.request_id: must be 1-128 characters"));
  }
  auto existing = store_->FindJobByRequestId(request.request_id);
  KILN_OK_OR_REPLY(existing);
  if (existing->has_value()) {
    return Send(peer, protocol::SubmitReply{(*existing)->id, true}, e.id);
  }
  SpecParseResult parsed = ParseJobSpec(request.spec);
  if (!parsed.ok()) {
    spdlog::info("refused a job spec with {} errors", parsed.errors.size());
    return ReplyError(peer, e.id,
                      Status::InvalidArgument("job spec rejected: " +
                                              std::to_string(parsed.errors.size()) + " error(s)"),
                      SpecErrorStrings(parsed.errors));
  }
  JobRecord job;
  job.request_id = request.request_id;
  job.name = parsed.spec.name;
  job.spec = request.spec;
  job.state = core::JobState::kPending;
  job.reason = "Waiting: not yet scheduled";
  job.ranks = parsed.spec.resources.ranks;
  job.gpus_per_rank = parsed.spec.resources.gpus_per_rank;
  job.max_retries = parsed.spec.max_retries;
  job.submitted_at = clock_.WallMs();
  if (request.resume_from_job) {
    const int64_t from_step = request.resume_from_step.value_or(-1);
    auto from = store_->FindCheckpoint(*request.resume_from_job, from_step);
    KILN_OK_OR_REPLY(from);
    if (!from->has_value()) {
      return ReplyError(peer, e.id, Status::NotFound(
          "resume from job " + std::to_string(*request.resume_from_job) + ": no checkpoint" +
          (from_step >= 0 ? " at step " + std::to_string(from_step) : "") +
          " (see kiln ckpt ls " + std::to_string(*request.resume_from_job) + ")"));
    }
    job.resume_job = *request.resume_from_job;
    job.resume_step = (*from)->step;
  }
  auto id = store_->InsertJob(job);
  KILN_OK_OR_REPLY(id);
  Status event = store_->AddEvent({*id, job.submitted_at, "", "PENDING", "submitted"});
  if (!event.ok()) return ReplyError(peer, e.id, event);
  spdlog::info("job {} \"{}\" submitted ({} ranks)", *id, job.name, job.ranks);
  dirty_ = true;
  Send(peer, protocol::SubmitReply{*id, false}, e.id);
}

void SchedulerService::OnQueue(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::QueueRequest, request);
  auto jobs = store_->ListJobs(request.all);
  KILN_OK_OR_REPLY(jobs);
  json view = json::array();
  for (const auto& j : *jobs) view.push_back(JobSummaryView(j));
  Send(peer, protocol::DataReply{std::move(view)}, e.id);
}

void SchedulerService::OnShow(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::ShowRequest, request);
  auto job = store_->GetJob(request.job_id);
  KILN_OK_OR_REPLY(job);
  if (!job->has_value()) return ReplyError(peer, e.id, JobNotFound(request.job_id));
  auto events = store_->Events(request.job_id);
  KILN_OK_OR_REPLY(events);
  auto checkpoints = store_->Checkpoints(request.job_id);
  KILN_OK_OR_REPLY(checkpoints);
  Send(peer, protocol::DataReply{JobDetailView(**job, *events, *checkpoints)}, e.id);
}

void SchedulerService::OnCancel(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::CancelRequest, request);
  auto found = store_->GetJob(request.job_id);
  KILN_OK_OR_REPLY(found);
  if (!found->has_value()) return ReplyError(peer, e.id, JobNotFound(request.job_id));
  JobRecord job = **found;
  const bool was_running = job.state == core::JobState::kRunning;
  Status changed = Transition(job, core::JobEvent::kCancel, "cancelled by user");
  if (!changed.ok()) {
    return ReplyError(peer, e.id,
                      Status::FailedPrecondition("job " + std::to_string(job.id) + " is " +
                                                 core::JobStateName(job.state) +
                                                 "; only PENDING or RUNNING jobs can be cancelled"));
  }
  if (was_running) {
    auto live = live_[job.node].find({job.id, job.attempt});
    if (live != live_[job.node].end()) live->second.stop_requested = true;
    auto w = workers_.find(job.node);
    if (w != workers_.end() && w->second.up) {
      Send(w->second.peer, protocol::KillJob{job.id, job.attempt, "cancelled by user"});
    }
  }
  spdlog::info("job {} cancelled", job.id);
  dirty_ = true;
  Send(peer, protocol::CancelReply{job.id, core::JobStateName(job.state)}, e.id);
}

void SchedulerService::OnLogs(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::LogsRequest, request);
  auto job = store_->GetJob(request.job_id);
  KILN_OK_OR_REPLY(job);
  if (!job->has_value()) return ReplyError(peer, e.id, JobNotFound(request.job_id));
  int64_t limit = std::clamp<int64_t>(request.limit, 1, 10000);
  auto lines = store_->Logs(request.job_id, request.after_seq, limit);
  KILN_OK_OR_REPLY(lines);
  json out = json::array();
  for (const auto& l : *lines) {
    out.push_back({{"seq", l.seq}, {"attempt", l.attempt}, {"time", l.time}, {"line", l.line}});
  }
  json view = {{"job_id", request.job_id},
               {"state", core::JobStateName((*job)->state)},
               {"finished", core::IsTerminal((*job)->state)},
               {"lines", std::move(out)}};
  Send(peer, protocol::DataReply{std::move(view)}, e.id);
}

void SchedulerService::OnNodes(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::NodesRequest, request);
  (void)request;
  auto nodes = store_->ListNodes();
  KILN_OK_OR_REPLY(nodes);
  json view = json::array();
  for (const auto& n : *nodes) {
    int64_t used = 0;
    for (const auto& [key, attempt] : live_[n.name]) used += attempt.ranks;
    view.push_back(NodeView(n, used));
  }
  Send(peer, protocol::DataReply{std::move(view)}, e.id);
}

}  // namespace kiln::service
