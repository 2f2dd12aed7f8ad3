// Requests from the kiln CLI. Each handler decodes its body, reads or changes state inside the
// turn's transaction, and queues exactly one reply.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/job_array.h"
#include "common/job_spec.h"
#include "common/json_fields.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/job_views.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using protocol::Envelope;
using nlohmann::json;


void SchedulerService::WithLiveReason(JobRecord& job) const {
  const ActiveJob* a = jobs_.Find(job.id);
  if (a != nullptr && job.state == core::JobState::kPending && !a->reason.empty()) {
    job.reason = a->reason;
  }
}

void SchedulerService::OnSubmit(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::SubmitRequest, request);
  if (request.request_id.empty() || request.request_id.size() > 128 ||
      request.request_id.find('#') != std::string::npos) {
    return ReplyError(
        req, Status::InvalidArgument("body.request_id: must be 1-128 characters without '#' (kiln "
                                     "names an array's tasks REQUEST_ID#INDEX)"));
  }
  auto existing = store_->FindJobByRequestId(request.request_id);
  KILN_OK_OR_REPLY(existing);
  if (existing->has_value()) {
    if ((*existing)->user != req.caller.user && !req.caller.admin) {
      return ReplyError(
          req, Status::PermissionDenied("body.request_id: already used by another user's submit; "
                                        "use a new request id"));
    }
    return Reply(req, protocol::SubmitReply{(*existing)->id, true, {}});
  }
  if (request.user.empty()) request.user = req.caller.user;
  if (!IsValidName(request.user, 64)) {
    return ReplyError(
        req, Status::InvalidArgument("body.user: must be 1-64 letters, digits, '-', '_' or '.'"));
  }
  KILN_PERMIT_OR_REPLY(core::MaySubmitAs(req.caller, request.user), "submit",
                       "user " + request.user);
  // An array or a sweep: its tasks' specs are validated with their index in (PrepareArray).
  std::optional<ArrayState> array;
  const size_t spec_bytes = request.spec.dump().size();
  if (spec_bytes > kMaxSpecBytes) {
    return ReplyError(req, Status::InvalidArgument(
                               "spec: " + std::to_string(spec_bytes / 1024) +
                               " KiB is over the limit of " + std::to_string(kMaxSpecBytes / 1024) +
                               " KiB; put large inputs in files the job reads"));
  }
  if ((request.array || request.sweep) && !ArrayOfSubmit(req, request, &array)) return;
  const int64_t new_pending = array ? array->tasks : 1;
  if (auto quota = quotas_.find(request.user);
      quota != quotas_.end() && quota->second.max_pending > 0 &&
      jobs_.PendingOf(request.user) + new_pending > quota->second.max_pending) {
    KILN_PERMIT_OR_REPLY(
        Status::FailedPrecondition(
            "Quota: user " + request.user + " has " +
            std::to_string(jobs_.PendingOf(request.user)) + " of " +
            std::to_string(quota->second.max_pending) + " pending jobs allowed" +
            (array ? " and the array adds " + std::to_string(new_pending) : std::string()) +
            "; submit again when some have started, or cancel some"),
        "submit", "user " + request.user);
  }
  SpecParseResult parsed =
      ParseJobSpec(array ? array->TrialSpec(request.spec, *array->pending.First()) : request.spec);
  if (!parsed.ok()) {
    spdlog::info("refused a job spec with {} errors", parsed.errors.size());
    const std::vector<std::string> errors =
        array ? array->TaskSpecErrors(*array->pending.First(), parsed.errors)
              : SpecErrorStrings(parsed.errors);
    return ReplyError(
        req,
        Status::InvalidArgument(std::string(array && array->sweep ? "sweep" : "job spec") +
                                " rejected: " + std::to_string(parsed.errors.size()) + " error(s)"),
        errors);
  }
  if (parsed.spec.serve) {
    return ReplyError(req, Status::InvalidArgument("job spec rejected: 1 error(s)"),
                      {"serve: set by kiln deploy for a service's replicas, not by a submit; "
                       "remove it and deploy the trained job (kiln deploy JOB --name NAME)"});
  }
  KILN_PERMIT_OR_REPLY(core::MaySubmitWithPriority(req.caller, parsed.spec.priority), "submit",
                       "user " + request.user);
  std::vector<std::string> dependency_errors;
  for (size_t i = 0; i < parsed.spec.depends_on.size(); ++i) {
    if (!jobs_.StateOf(parsed.spec.depends_on[i])) {
      dependency_errors.push_back("depends_on[" + std::to_string(i) + "]: no job with id " +
                                  std::to_string(parsed.spec.depends_on[i]));
    }
  }
  if (!dependency_errors.empty()) {
    return ReplyError(req, Status::InvalidArgument("job spec rejected: unknown dependency"),
                      dependency_errors);
  }
  JobRecord job;
  job.request_id = request.request_id;
  job.user = request.user;
  job.priority = parsed.spec.priority;
  job.held = request.hold;
  job.time_limit_ms = parsed.spec.time_limit_s * 1000;
  job.depends_on = parsed.spec.depends_on;
  job.name = parsed.spec.name;
  if (array && array->sweep) {
    job.name = array->sweep->name;  // the sweep's, or its base's
  } else if (array && request.spec.contains("name") && request.spec["name"].is_string()) {
    job.name = request.spec["name"].get<std::string>();  // "${array_index}" left in
  }
  job.spec = request.spec;
  job.state = core::JobState::kPending;
  job.reason = "Waiting: not yet scheduled";
  job.ranks = parsed.spec.resources.ranks;
  job.gpus_per_rank = parsed.spec.resources.gpus_per_rank;
  job.max_retries = parsed.spec.max_retries;
  job.submitted_at = clock_.WallMs();
  if (request.resume_from_job) {
    auto source = store_->GetJob(*request.resume_from_job);
    KILN_OK_OR_REPLY(source);
    if (source->has_value()) {
      KILN_PERMIT_OR_REPLY(core::MayActOnJob(req.caller, core::JobAction::kCheckpoints,
                                             (*source)->id, (*source)->user),
                           "submit", "job " + std::to_string((*source)->id));
    }
    const int64_t from_step = request.resume_from_step.value_or(-1);
    auto from = store_->FindCheckpoint(*request.resume_from_job, from_step);
    KILN_OK_OR_REPLY(from);
    if (!from->has_value()) {
      return ReplyError(
          req,
          Status::NotFound("resume from job " + std::to_string(*request.resume_from_job) +
                           ": no checkpoint" +
                           (from_step >= 0 ? " at step " + std::to_string(from_step) : "") +
                           " (see kiln ckpt ls " + std::to_string(*request.resume_from_job) + ")"));
    }
    // Steps continue from the checkpoint's, so epochs counts the resumed ones too. On the same
    // data and batch size a step means the same samples, and a checkpoint past the last epoch
    // trains nothing. (The spec was validated, so these are objects.)
    auto train_batch = [](const json& spec) {
      const json train = spec.value("train", json::object());
      return train.is_object() ? train.value("batch_size", json()) : json();
    };
    const bool same_data = source->has_value() && (*source)->spec.is_object() &&
                           (*source)->spec.value("data", json()) == request.spec.value("data", json()) &&
                           train_batch((*source)->spec) == train_batch(request.spec);
    if (same_data && (*from)->epoch >= parsed.spec.train.epochs) {
      return ReplyError(
          req, Status::InvalidArgument("job spec rejected: nothing to train"),
          {"train.epochs: " + std::to_string(parsed.spec.train.epochs) +
           " would train nothing: "
           "the checkpoint at step " +
           std::to_string((*from)->step) + " of job " + std::to_string(*request.resume_from_job) +
           " has already done " + std::to_string((*from)->epoch) +
           " epoch(s) on the same data, and epochs counts "
           "every epoch, the resumed ones included; set it to " +
           std::to_string((*from)->epoch + 1) + " or more"});
    }
    job.resume_job = *request.resume_from_job;
    job.resume_step = (*from)->step;
  }
  if (array && !PrepareArray(req, *array, job)) return;
  auto id = store_->InsertJob(job);
  KILN_OK_OR_REPLY(id);
  Status event = store_->AddEvent(
      {*id, job.submitted_at, "", "PENDING",
       std::string("submitted by ") + job.user +
           (array ? std::string(array->sweep ? " as a sweep of " : " as an array of ") +
                        std::to_string(new_pending) + (array->sweep ? " trials" : " tasks")
                  : "") +
           (job.held ? ", held" : "")});
  if (!event.ok()) return ReplyError(req, event);
  job.id = *id;
  const ActiveJob& tracked = jobs_.Track(job, parsed.spec);
  spdlog::debug("job {} \"{}\" submitted by {} ({} ranks)", *id, job.name, job.user, job.ranks);
  submitted_ = true;
  Audit(req, "submit", "job " + std::to_string(*id), Status::Ok(), job.name);
  metrics_.Add("kiln_submits_total", {});
  protocol::SubmitReply reply{*id, false, SubmitWarning(tracked)};
  Reply(req, reply);
}

std::optional<std::string> SchedulerService::SubmitWarning(const ActiveJob& job) {
  // From the last pass's node classes (a few), not a walk over every node on each submit.
  if (!job.unplaceable.empty()) return job.unplaceable;
  if (up_node_classes_.empty()) {
    return "no worker node is up and accepting jobs now: the job waits until one is (kiln nodes)";
  }
  auto why = core::InfeasibleReason(up_node_classes_, job.queued.request);
  if (why && why->rfind("Account:", 0) == 0) return AccountWait(job).value_or(*why);
  return why;
}

void SchedulerService::OnQueue(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::QueueRequest, request);
  JobQuery query;
  query.include_finished = request.all;
  query.after_id = request.after_id.value_or(0);
  query.limit = std::clamp<int64_t>(request.limit.value_or(kMaxJobsPerReply), 1, kMaxJobsPerReply);
  query.user = request.user.value_or("");
  if (options_.private_jobs && !req.caller.admin) {
    if (!query.user.empty() && query.user != req.caller.user) {
      return ReplyError(req,
                        Status::PermissionDenied("body.user: this scheduler keeps jobs private "
                                                 "(--private-jobs): you may list only your own"));
    }
    query.user = req.caller.user;
  }
  for (const auto& state : request.states.value_or(std::vector<std::string>{})) {
    if (!core::ParseJobState(state)) {
      return ReplyError(
          req, Status::InvalidArgument("body.states: unknown state \"" + state +
                                       "\"; use "
                                       "PENDING, RUNNING, COMPLETED, FAILED or CANCELLED"));
    }
    query.states.push_back(state);
  }
  json view = json::array();
  size_t bytes = 0;
  bool more = false;
  int64_t last_id = 0;
  while (!more) {
    auto jobs = store_->ListJobSummaries(query);
    KILN_OK_OR_REPLY(jobs);
    for (auto& j : *jobs) {
      if (request.limit && bytes >= kMaxReplyBytes) {
        more = true;
        break;
      }
      WithLiveReason(j);
      json summary = JobSummaryView(j);
      AddStartEstimate(summary, j.id);
      if (!req.caller.admin && j.user != req.caller.user) {
        // Another user's job: what it asks for and why it waits, not how it is doing or why it
        // failed (a rank's error names paths).
        summary.erase("metrics");
        if (j.state != core::JobState::kPending) summary["reason"] = "";
      }
      bytes += summary.dump().size();
      view.push_back(std::move(summary));
      last_id = j.id;
    }
    if (static_cast<int64_t>(jobs->size()) < query.limit) break;
    if (request.limit) {
      more = true;  // a full page: the client asks for the next
    } else {
      query.after_id = last_id;  // an older client wants everything in one reply
    }
  }
  if (!request.limit) {
    if (bytes > kMaxUnpagedReplyBytes) {
      return ReplyError(
          req, Status::FailedPrecondition(std::to_string(view.size()) +
                                          " jobs do not fit in one "
                                          "reply; use a kiln CLI of this version, which pages"));
    }
    return Reply(req, protocol::DataReply{std::move(view)});
  }
  json page = {{"jobs", std::move(view)}, {"next_after_id", more ? json(last_id) : json()}};
  Reply(req, protocol::DataReply{std::move(page)});
}

void SchedulerService::OnShow(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::ShowRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, record);
  // Its spec, paths, metrics and checkpoint hashes are its owner's.
  KILN_PERMIT_OR_REPLY(
      core::MayActOnJob(req.caller, core::JobAction::kShow, record.id, record.user), "show",
      "job " + std::to_string(record.id));
  if (request.array_index) {
    bool prospective = false;
    if (!ArrayTaskOf(req, record, *request.array_index, &record, &prospective)) return;
    if (prospective) {
      return ReplyError(req,
                        Status::NotFound("task " + TaskName(record.array_job, record.array_index) +
                                         " has not started yet: it is PENDING in array " +
                                         std::to_string(record.array_job) + " (kiln show " +
                                         std::to_string(record.array_job) + ")"));
    }
  }
  auto events = store_->Events(record.id);
  KILN_OK_OR_REPLY(events);
  auto attempts = store_->Attempts(record.id);
  KILN_OK_OR_REPLY(attempts);
  auto checkpoints = store_->Checkpoints(record.id);
  KILN_OK_OR_REPLY(checkpoints);
  WithLiveReason(record);
  json view = JobDetailView(record, *events, *attempts, *checkpoints);
  AddStartEstimate(view, record.id);
  if (record.array.is_object()) {
    view["array"] = ArrayView(record);
    const ActiveJob* live = jobs_.Find(record.id);
    const ArrayState array =
        live != nullptr && live->array ? *live->array : ArrayState::FromJson(record.array);
    if (array.sweep) view["sweep"] = SweepView(record, array);
  }
  Reply(req, protocol::DataReply{std::move(view)});
}

void SchedulerService::OnCancel(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CancelRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, job);
  bool prospective = false;  // a pending task without a row yet: made once the cancel may go on
  if (request.array_index && !ArrayTaskOf(req, job, *request.array_index, &job, &prospective)) {
    return;
  }
  const std::string target =
      "job " +
      (request.array_index ? TaskName(job.array_job, job.array_index) : std::to_string(job.id));
  KILN_PERMIT_OR_REPLY(core::MayActOnJob(req.caller, core::JobAction::kCancel, job.id, job.user),
                       "cancel", target);
  if (!request.array_index && job.array.is_object()) return CancelArray(req, job);
  if (prospective && !MakeArrayTask(req, &job)) return;
  const bool was_running = job.state == core::JobState::kRunning;
  const std::string why = "cancelled by " + req.caller.user;
  Status changed = Transition(job, core::JobEvent::kCancel, why);
  if (!changed.ok()) {
    return ReplyError(
        req, Status::FailedPrecondition("job " + std::to_string(job.id) + " is " +
                                        core::JobStateName(job.state) +
                                        "; only PENDING or RUNNING jobs can be cancelled"));
  }
  if (was_running) StopAttempt(job, why);
  spdlog::info("job {} {}", job.id, why);
  Audit(req, "cancel", target, Status::Ok());
  dirty_ = true;
  Reply(req, protocol::CancelReply{job.id, core::JobStateName(job.state)});
}

void SchedulerService::OnLogs(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::LogsRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, job);
  KILN_PERMIT_OR_REPLY(core::MayActOnJob(req.caller, core::JobAction::kLogs, job.id, job.user),
                       "logs", "job " + std::to_string(job.id));
  for (const auto& [name, value] : {std::pair{"attempt", request.attempt},
                                    std::pair{"rank", request.rank},
                                    std::pair{"tail", request.tail}}) {
    if (value && *value < 0) {
      return ReplyError(req,
                        Status::InvalidArgument(std::string("body.") + name + ": must be >= 0"));
    }
  }
  LogQuery query;
  query.after_seq = request.after_seq;
  query.limit = std::clamp<int64_t>(request.limit, 1, 10000);
  query.attempt = request.attempt.value_or(0);
  query.since = request.since_ms.value_or(0);
  query.rank = request.rank.value_or(-1);
  if (request.tail) {
    auto from = store_->SeqBeforeLast(request.job_id, query, *request.tail);
    KILN_OK_OR_REPLY(from);
    query.after_seq = std::max(query.after_seq, *from);
  }
  auto lines = store_->Logs(request.job_id, query);
  KILN_OK_OR_REPLY(lines);
  json out = json::array();
  size_t bytes = 0;
  int64_t next_after_seq = query.after_seq;
  bool more = static_cast<int64_t>(lines->size()) == query.limit;
  for (const auto& l : *lines) {
    if (bytes >= kMaxReplyBytes) {
      more = true;  // lines of up to 16 KiB each: the page ends at about 1 MiB
      break;
    }
    bytes += l.line.size() + 64;
    next_after_seq = l.seq;
    out.push_back({{"seq", l.seq}, {"attempt", l.attempt}, {"time", l.time}, {"line", l.line}});
  }
  json view = {{"job_id", request.job_id},
               {"state", core::JobStateName(job.state)},
               {"finished", core::IsTerminal(job.state)},
               {"lines", std::move(out)},
               {"more", more},
               {"next_after_seq", next_after_seq}};
  Reply(req, protocol::DataReply{std::move(view)});
}

void SchedulerService::OnNodes(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::NodesRequest, request);
  (void)request;
  auto nodes = store_->ListNodes();
  KILN_OK_OR_REPLY(nodes);
  json view = json::array();
  for (auto n : *nodes) {
    // Heartbeats update the in-memory record; the row only now and then.
    if (auto w = workers_.find(n.name); w != workers_.end()) {
      n.last_seen_at = std::max(n.last_seen_at, w->second.record.last_seen_at);
    }
    view.push_back(NodeView(n, UseOf(n.name)));
  }
  Reply(req, protocol::DataReply{std::move(view)});
}

}  // namespace kiln::service
