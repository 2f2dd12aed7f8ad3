// Checkpoints: resumable verified uploads from workers (protocol in common/protocol/messages.h),
// the registry, retention, and chunked reads for `kiln ckpt pull` and workers that resume.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/quantities.h"
#include "common/safe_open.h"
#include "scheduler/core/checkpoint_retention.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/job_views.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using protocol::Envelope;
using nlohmann::json;

namespace {

constexpr int64_t kMaxCheckpointBytes = int64_t{64} << 30;
constexpr int64_t kMaxReadBytes = 8 << 20;

CheckpointSpec CheckpointSpecOf(const JobRecord& job) {
  SpecParseResult parsed = ParseJobSpec(job.spec);
  return parsed.spec.checkpoint;  // defaults if the stored spec were somehow invalid
}

}  // namespace

void SchedulerService::OnCheckpointBegin(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointBegin, m);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  auto done = [&](bool ok, const std::string& reason) {
    Send(req.peer, protocol::CheckpointDone{m.sha256, ok, reason});
  };
  if (!IsHexSha256(m.sha256)) return done(false, "sha256: must be 64 lowercase hex digits");
  if (m.bytes <= 0 || m.bytes > kMaxCheckpointBytes) {
    return done(false, "bytes: must be between 1 and " + std::to_string(kMaxCheckpointBytes));
  }
  auto job = store_->GetJob(m.job_id);
  if (!job.ok() || !job->has_value()) return done(false, "no job " + std::to_string(m.job_id));
  // A worker key reaches only the attempts placed on that worker: anything else is refused and
  // audited, so that an admitted but rogue worker cannot add a checkpoint to another job.
  if (!PlacedOn(**job, m.attempt, w->record.name)) {
    req.caller = {"worker " + w->record.name, false, true};
    Audit(req, "ckpt.upload", "job " + std::to_string(m.job_id),
          Status::PermissionDenied("attempt " + std::to_string(m.attempt) +
                                   " of the job is not placed on " + w->record.name));
    spdlog::warn("worker {} announced a checkpoint of job {} attempt {}, which is not placed "
                 "there: refused",
                 w->record.name, m.job_id, m.attempt);
    return done(false, "job " + std::to_string(m.job_id) + " attempt " +
                           std::to_string(m.attempt) + " is not placed on this worker");
  }
  CheckpointRecord record{m.job_id, m.attempt, m.step, m.epoch,
                          m.metrics.is_object() ? m.metrics : json::object(),
                          m.bytes, m.sha256, clock_.WallMs(), m.path.value_or("")};
  if (m.path) {
    const CheckpointSpec spec = CheckpointSpecOf(**job);
    // Exactly STORAGE_PATH/job-ID/NAME: the folder the job's ranks made for this job, nothing
    // else under the storage path (which other users may share).
    const std::string folder = spec.storage_path + "/job-" + std::to_string(m.job_id) + "/";
    const std::string name = m.path->rfind(folder, 0) == 0 ? m.path->substr(folder.size()) : "";
    if (spec.storage != "shared_fs" || name.empty() || name.find('/') != std::string::npos ||
        name == "." || name == "..") {
      return done(false, "path " + *m.path + " is not a file in " + folder +
                             " (the job's folder under checkpoint.storage.path)");
    }
    // The job's account can write there: the scheduler (maybe root) opens it only as a regular
    // file of the announced size reached through no link, and reads it the same way later.
    auto opened = ReadRegularRange(*m.path, 0, 0, m.bytes);
    if (!opened.ok()) {
      return done(false, "path " + *m.path + " is not a readable regular file of " +
                             std::to_string(m.bytes) + " bytes as the scheduler sees it (" +
                             opened.status().message() + ")");
    }
  } else if (auto refused = CheckpointQuotaRefusal((*job)->user, m.bytes)) {
    spdlog::warn("job {}: checkpoint at step {} refused: {}", m.job_id, m.step, *refused);
    return done(false, *refused);
  } else if (!checkpoints_.Has(m.sha256) || !JobHasBlob(m.job_id, m.sha256)) {
    // A blob is attached by its hash alone only to a job that already holds it (a repeated
    // report); otherwise its bytes come, verified against the hash, so that knowing another
    // job's hash gives nobody its checkpoint.
    auto announced = uploads_.Announce(record, w->record.name);
    if (announced.kind == UploadRegistry::ChunkResult::kContinue) {
      return Send(req.peer, protocol::CheckpointOffset{m.sha256, announced.offset, false});
    }
    Status registered = RegisterCheckpoint(announced.record);
    return done(registered.ok(), registered.ok() ? "" : registered.message());
  }
  Status s = RegisterCheckpoint(record);
  done(s.ok(), s.ok() ? "" : s.message());
}

void SchedulerService::OnCheckpointChunk(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointChunk, m);
  Worker* w = KnownWorker(req.peer);
  if (w == nullptr) return;
  if (req.frames.size() < 3) {
    return Send(req.peer, protocol::CheckpointDone{m.sha256, false, "a chunk carries its bytes"});
  }
  auto result = uploads_.Chunk(m.sha256, w->record.name, m.offset, req.frames[2]);
  switch (result.kind) {
    case UploadRegistry::ChunkResult::kContinue:
      return Send(req.peer, protocol::CheckpointOffset{m.sha256, result.offset, result.resync});
    case UploadRegistry::ChunkResult::kRejected:
      return Send(req.peer, protocol::CheckpointDone{m.sha256, false, result.reason});
    case UploadRegistry::ChunkResult::kComplete: {
      Status registered = RegisterCheckpoint(result.record);
      return Send(req.peer,
                  protocol::CheckpointDone{m.sha256, registered.ok(), registered.message()});
    }
  }
}

std::optional<std::string> SchedulerService::CheckpointQuotaRefusal(const std::string& user,
                                                                    int64_t bytes) {
  auto quota = quotas_.find(user);
  if (quota == quotas_.end() || quota->second.max_checkpoint_bytes <= 0) return std::nullopt;
  auto stored = store_->CheckpointBytesOfUser(user);
  if (!stored.ok() || *stored + bytes <= quota->second.max_checkpoint_bytes) return std::nullopt;
  return "Quota: user " + user + " stores " + FormatSize(*stored) + " of checkpoints, and " +
         FormatSize(bytes) + " more would pass the " +
         FormatSize(quota->second.max_checkpoint_bytes) +
         " allowed; remove some (kiln ckpt rm JOB STEP) or lower checkpoint.keep_last";
}

bool SchedulerService::JobHasBlob(int64_t job_id, const std::string& sha256) {
  auto rows = store_->Checkpoints(job_id);
  if (!rows.ok()) return false;
  for (const auto& c : *rows) {
    if (c.sha256 == sha256 && c.path.empty()) return true;
  }
  return false;
}

Status SchedulerService::RegisterCheckpoint(const CheckpointRecord& record) {
  KILN_RETURN_IF_ERROR(store_->AddCheckpoint(record));
  spdlog::info("job {} checkpoint at step {} ({} bytes{})", record.job_id, record.step,
               record.bytes, record.path.empty() ? "" : ", at " + record.path);
  auto job = store_->GetJob(record.job_id);
  if (job.ok() && job->has_value()) ApplyRetention(**job);
  return Status::Ok();
}

std::set<int64_t> SchedulerService::ProtectedSteps(int64_t job_id) {
  std::set<int64_t> steps;
  for (const auto& [node, attempts] : placements_.all()) {
    for (const auto& [key, a] : attempts) {
      if (a.resume.first == job_id) steps.insert(a.resume.second);
    }
  }
  auto jobs = store_->ListJobs(false);
  if (jobs.ok()) {
    for (const auto& j : *jobs) {
      if (j.resume_job == job_id && j.resume_step >= 0) steps.insert(j.resume_step);
    }
  }
  for (const auto& [name, s] : services_.all()) {  // a deployed model, between replicas too
    if (s.model.job == job_id) steps.insert(s.model.step);
  }
  return steps;
}

void SchedulerService::ApplyRetention(const JobRecord& job) {
  const CheckpointSpec spec = CheckpointSpecOf(job);
  auto all = store_->Checkpoints(job.id);
  if (!all.ok()) return;
  std::vector<core::RetainedCheckpoint> candidates;
  for (const auto& c : *all) {
    core::RetainedCheckpoint r{c.step, std::nullopt};
    if (c.metrics.contains(spec.best_metric) && c.metrics[spec.best_metric].is_number()) {
      r.metric = c.metrics[spec.best_metric].get<double>();
    }
    candidates.push_back(r);
  }
  core::RetentionPolicy policy{spec.keep_last, spec.keep_best, spec.best_mode == "max"};
  auto drop = core::CheckpointsToDelete(candidates, policy, ProtectedSteps(job.id));
  for (int64_t step : drop) {
    for (const auto& c : *all) {
      if (c.step == step) DeleteCheckpointRow(c);
    }
  }
}

void SchedulerService::DeleteCheckpointRow(const CheckpointRecord& record) {
  if (store_->DeleteCheckpoint(record.job_id, record.step).ok()) {
    deleted_checkpoints_.push_back(record);
  }
}

void SchedulerService::RemoveFilesAfterCommit() {
  for (const auto& c : deleted_checkpoints_) {
    if (!c.path.empty()) {
      // shared_fs: the file belongs to this one checkpoint; its folder is the job's, so no link
      // is followed on the way (the job could have made the folder a link to another).
      (void)UnlinkNoFollow(c.path);
      continue;
    }
    // Blobs are shared by content: one is removed only when no checkpoint row refers to it.
    auto refs = store_->CountCheckpointsWithSha(c.sha256);
    if (refs.ok() && *refs == 0) checkpoints_.Remove(c.sha256);
  }
  deleted_checkpoints_.clear();
}

void SchedulerService::OnCheckpoints(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointsRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, job);
  KILN_PERMIT_OR_REPLY(
      core::MayActOnJob(req.caller, core::JobAction::kCheckpoints, job.id, job.user), "ckpt.ls",
      "job " + std::to_string(job.id));
  auto checkpoints = store_->Checkpoints(request.job_id);
  KILN_OK_OR_REPLY(checkpoints);
  json view = json::array();
  for (const auto& c : *checkpoints) view.push_back(CheckpointView(c));
  Reply(req, protocol::DataReply{std::move(view)});
}

void SchedulerService::OnCheckpointRead(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointRead, r);
  // Chunks are 8 MiB: while many replies wait for peers that have not taken them, a client's
  // read waits too (a worker's resume does not).
  if (!req.caller.worker && transport_->WaitingBytes() > kMaxWaitingBeforeReadsWait) {
    return ReplyError(req, Status::Unavailable("the scheduler has many replies waiting to be "
                                               "sent; try the read again in a few seconds"));
  }
  KILN_JOB_OR_REPLY(r.job_id, job);
  const std::string target = "job " + std::to_string(job.id);
  if (req.caller.worker) {
    // A worker reads only the checkpoint that an attempt placed on it resumes from.
    bool resumes_from_it = false;
    auto node = node_of_peer_.find(req.peer);
    if (node != node_of_peer_.end()) {
      for (const auto& [key, live] : placements_.On(node->second)) {
        resumes_from_it = resumes_from_it || live.resume == std::make_pair(r.job_id, r.step);
      }
    }
    if (!resumes_from_it) {
      return ReplyError(
          req, Status::PermissionDenied("a worker may only read the checkpoint that an attempt "
                                        "placed on it resumes from"));
    }
  } else {
    KILN_PERMIT_OR_REPLY(
        core::MayActOnJob(req.caller, core::JobAction::kCheckpoints, job.id, job.user), "ckpt.pull",
        target);
  }
  auto found = store_->FindCheckpoint(r.job_id, r.step);
  KILN_OK_OR_REPLY(found);
  if (!found->has_value()) {
    return ReplyError(req,
                      Status::NotFound("job " + std::to_string(r.job_id) + " has no checkpoint" +
                                       (r.step >= 0 ? " at step " + std::to_string(r.step) : "")));
  }
  const CheckpointRecord& c = **found;
  if (r.offset < 0 || r.offset > c.bytes || r.length < 0) {
    return ReplyError(req,
                      Status::InvalidArgument("offset/length: must lie within the checkpoint's " +
                                              std::to_string(c.bytes) + " bytes"));
  }
  // A shared_fs checkpoint lies where the job's account can write: read through no link, as a
  // regular file, never past the size registered.
  auto bytes = c.path.empty()
                   ? ReadFileRange(checkpoints_.PathOf(c.sha256), r.offset,
                                   std::min(r.length, kMaxReadBytes))
                   : ReadRegularRange(c.path, r.offset, std::min(r.length, kMaxReadBytes), c.bytes);
  if (!bytes.ok()) return ReplyError(req, bytes.status());
  if (r.offset == 0 && !req.caller.worker) {
    Audit(req, "ckpt.pull", target, Status::Ok(), "step " + std::to_string(c.step));
  }
  Reply(req, protocol::CheckpointData{c.job_id, c.step, c.sha256, c.bytes, r.offset},
        {std::move(bytes).value()});
}

void SchedulerService::OnCheckpointRemove(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointRemove, r);
  KILN_JOB_OR_REPLY(r.job_id, job);
  const std::string target = "job " + std::to_string(job.id);
  KILN_PERMIT_OR_REPLY(
      core::MayActOnJob(req.caller, core::JobAction::kRemoveCheckpoint, job.id, job.user),
      "ckpt.rm", target);
  auto found = store_->FindCheckpoint(r.job_id, r.step);
  KILN_OK_OR_REPLY(found);
  if (!found->has_value() || r.step < 0) {
    // Idempotent: removing what is not there succeeds and says so.
    return Reply(req, protocol::DataReply{json{{"removed", false}}});
  }
  if (ProtectedSteps(r.job_id).count(r.step) > 0) {
    return ReplyError(
        req, Status::FailedPrecondition(
                 "checkpoint " + std::to_string(r.step) + " of job " + std::to_string(r.job_id) +
                 " is what a running or pending attempt resumes from; cancel that job first"));
  }
  DeleteCheckpointRow(**found);
  spdlog::info("job {} checkpoint at step {} removed by {}", r.job_id, r.step, req.caller.user);
  Audit(req, "ckpt.rm", target, Status::Ok(), "step " + std::to_string(r.step));
  Reply(req, protocol::DataReply{json{{"removed", true}}});
}

}  // namespace kiln::service
