// Checkpoints: resumable verified uploads from workers (protocol in common/protocol/messages.h),
// the registry, retention, and chunked reads for `kiln ckpt pull` and workers that resume.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/file_util.h"
#include "common/job_spec.h"
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

void SchedulerService::OnCheckpointBegin(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointBegin, m);
  Worker* w = KnownWorker(peer);
  if (w == nullptr) return;
  auto done = [&](bool ok, const std::string& reason) {
    Send(peer, protocol::CheckpointDone{m.sha256, ok, reason});
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
    caller_ = {"worker " + w->record.name, false, true};
    Audit("ckpt.upload", "job " + std::to_string(m.job_id),
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
    if (spec.storage != "shared_fs" || m.path->rfind(spec.storage_path + "/", 0) != 0 ||
        m.path->find("/../") != std::string::npos || ::access(m.path->c_str(), R_OK) != 0) {
      return done(false, "path " + *m.path + " is not a readable file under the job's "
                         "checkpoint.storage.path as the scheduler sees it");
    }
  } else if (!checkpoints_.Has(m.sha256) || !JobHasBlob(m.job_id, m.sha256)) {
    // A blob is attached by its hash alone only to a job that already holds it (a repeated
    // report); otherwise its bytes come, verified against the hash, so that knowing another
    // job's hash gives nobody its checkpoint.
    uploads_[m.sha256] = {record, w->record.name};
    Send(peer, protocol::CheckpointOffset{m.sha256, checkpoints_.PartSize(m.sha256), false});
    return;
  }
  Status s = RegisterCheckpoint(record);
  done(s.ok(), s.ok() ? "" : s.message());
}

void SchedulerService::OnCheckpointChunk(const std::string& peer, const Envelope& e,
                                         const transport::Frames& frames) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointChunk, m);
  Worker* w = KnownWorker(peer);
  if (w == nullptr) return;
  auto upload = uploads_.find(m.sha256);
  if (upload == uploads_.end() || frames.size() < 3) {
    return Send(peer, protocol::CheckpointDone{m.sha256, false,
                                               "no upload in progress; send ckpt_begin"});
  }
  if (upload->second.node != w->record.name) {  // only the worker that announced it
    return Send(peer, protocol::CheckpointDone{m.sha256, false,
                                               "this upload was announced by another worker"});
  }
  const int64_t have = checkpoints_.PartSize(m.sha256);
  if (m.offset != have) {
    // A duplicate (offset < have) is acknowledged; a gap (offset > have) makes the worker rewind.
    return Send(peer, protocol::CheckpointOffset{m.sha256, have, m.offset > have});
  }
  const CheckpointRecord record = upload->second.record;
  const std::string& bytes = frames[2];
  auto fail = [&](const std::string& reason) {
    checkpoints_.DiscardPart(m.sha256);
    uploads_.erase(m.sha256);
    spdlog::warn("checkpoint upload of job {} step {} rejected: {}", record.job_id, record.step,
                 reason);
    Send(peer, protocol::CheckpointDone{m.sha256, false, reason});
  };
  if (have + static_cast<int64_t>(bytes.size()) > record.bytes) {
    return fail("upload is longer than the " + std::to_string(record.bytes) + " bytes announced");
  }
  Status appended = checkpoints_.AppendPart(m.sha256, m.offset, bytes);
  if (!appended.ok()) return fail(appended.message());
  const int64_t now_have = have + static_cast<int64_t>(bytes.size());
  if (now_have < record.bytes) {
    return Send(peer, protocol::CheckpointOffset{m.sha256, now_have, false});
  }
  Status finished = checkpoints_.FinishPart(m.sha256, record.bytes);
  if (!finished.ok()) return fail(finished.message());
  uploads_.erase(m.sha256);
  Status registered = RegisterCheckpoint(record);
  Send(peer, protocol::CheckpointDone{m.sha256, registered.ok(), registered.message()});
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
      ::unlink(c.path.c_str());  // shared_fs: the file belongs to this one checkpoint
      continue;
    }
    // Blobs are shared by content: one is removed only when no checkpoint row refers to it.
    auto refs = store_->CountCheckpointsWithSha(c.sha256);
    if (refs.ok() && *refs == 0) checkpoints_.Remove(c.sha256);
  }
  deleted_checkpoints_.clear();
}

void SchedulerService::OnCheckpoints(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointsRequest, request);
  KILN_JOB_OR_REPLY(request.job_id, job);
  KILN_PERMIT_OR_REPLY(core::MayActOnJob(caller_, core::JobAction::kCheckpoints, job.id, job.user),
                       "ckpt.ls", "job " + std::to_string(job.id));
  auto checkpoints = store_->Checkpoints(request.job_id);
  KILN_OK_OR_REPLY(checkpoints);
  json view = json::array();
  for (const auto& c : *checkpoints) view.push_back(CheckpointView(c));
  Send(peer, protocol::DataReply{std::move(view)}, e.id);
}

void SchedulerService::OnCheckpointRead(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointRead, r);
  KILN_JOB_OR_REPLY(r.job_id, job);
  const std::string target = "job " + std::to_string(job.id);
  if (caller_.worker) {
    // A worker reads only the checkpoint that an attempt placed on it resumes from.
    bool resumes_from_it = false;
    auto node = node_of_peer_.find(peer);
    if (node != node_of_peer_.end()) {
      for (const auto& [key, live] : placements_.On(node->second)) {
        resumes_from_it = resumes_from_it || live.resume == std::make_pair(r.job_id, r.step);
      }
    }
    if (!resumes_from_it) {
      return ReplyError(peer, e.id, Status::PermissionDenied(
                                        "a worker may only read the checkpoint that an attempt "
                                        "placed on it resumes from"));
    }
  } else {
    KILN_PERMIT_OR_REPLY(
        core::MayActOnJob(caller_, core::JobAction::kCheckpoints, job.id, job.user),
        "ckpt.pull", target);
  }
  auto found = store_->FindCheckpoint(r.job_id, r.step);
  KILN_OK_OR_REPLY(found);
  if (!found->has_value()) {
    return ReplyError(peer, e.id, Status::NotFound(
        "job " + std::to_string(r.job_id) + " has no checkpoint" +
        (r.step >= 0 ? " at step " + std::to_string(r.step) : "")));
  }
  const CheckpointRecord& c = **found;
  if (r.offset < 0 || r.offset > c.bytes || r.length < 0) {
    return ReplyError(peer, e.id, Status::InvalidArgument(
        "offset/length: must lie within the checkpoint's " + std::to_string(c.bytes) + " bytes"));
  }
  const std::string path = c.path.empty() ? checkpoints_.PathOf(c.sha256) : c.path;
  auto bytes = ReadFileRange(path, r.offset, std::min(r.length, kMaxReadBytes));
  if (!bytes.ok()) return ReplyError(peer, e.id, bytes.status());
  if (r.offset == 0 && !caller_.worker) {
    Audit("ckpt.pull", target, Status::Ok(), "step " + std::to_string(c.step));
  }
  Send(peer, protocol::CheckpointData{c.job_id, c.step, c.sha256, c.bytes, r.offset}, e.id,
       {std::move(bytes).value()});
}

void SchedulerService::OnCheckpointRemove(const std::string& peer, const Envelope& e) {
  KILN_DECODE_OR_REPLY(protocol::CheckpointRemove, r);
  KILN_JOB_OR_REPLY(r.job_id, job);
  const std::string target = "job " + std::to_string(job.id);
  KILN_PERMIT_OR_REPLY(core::MayActOnJob(caller_, core::JobAction::kRemoveCheckpoint, job.id,
                                         job.user),
                       "ckpt.rm", target);
  auto found = store_->FindCheckpoint(r.job_id, r.step);
  KILN_OK_OR_REPLY(found);
  if (!found->has_value() || r.step < 0) {
    // Idempotent: removing what is not there succeeds and says so.
    return Send(peer, protocol::DataReply{json{{"removed", false}}}, e.id);
  }
  if (ProtectedSteps(r.job_id).count(r.step) > 0) {
    return ReplyError(peer, e.id, Status::FailedPrecondition(
        "checkpoint " + std::to_string(r.step) + " of job " + std::to_string(r.job_id) +
        " is what a running or pending attempt resumes from; cancel that job first"));
  }
  DeleteCheckpointRow(**found);
  spdlog::info("job {} checkpoint at step {} removed by {}", r.job_id, r.step, caller_.user);
  Audit("ckpt.rm", target, Status::Ok(), "step " + std::to_string(r.step));
  Send(peer, protocol::DataReply{json{{"removed", true}}}, e.id);
}

}  // namespace kiln::service
