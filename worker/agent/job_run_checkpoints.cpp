// JobRun's checkpoints: the one an attempt resumes from, fetched from the scheduler in chunks
// (when it is not on a shared file system), and those its rank 0 reports, checked before they
// are queued for upload.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/file_util.h"
#include "common/safe_open.h"
#include "worker/agent/job_run.h"

namespace kiln::agent {

namespace {

constexpr int64_t kFetchChunkBytes = 8 << 20;

}  // namespace

std::string JobRun::FetchId() const {
  return "fetch-" + std::to_string(job_id_) + "-" + std::to_string(attempt_);
}

void JobRun::RequestNextChunk(Millis now) {
  protocol::CheckpointRead read{launch_.resume_job, launch_.resume_step, fetched_,
                                kFetchChunkBytes};
  sink_(protocol::Encode(read, FetchId()));
  fetch_sent_at_ = now;
}

void JobRun::OnFetchReply(const protocol::Envelope& e, const transport::Frames& frames,
                          Millis now) {
  if (!fetching_) return;
  if (e.type == protocol::ErrorReply::kType) {
    auto error = protocol::DecodeBody<protocol::ErrorReply>(e);
    failure_ = "cannot fetch the checkpoint to resume from: " +
               (error.ok() ? error->message : std::string("malformed error"));
    fetching_ = false;
    return;
  }
  auto data = protocol::DecodeBody<protocol::CheckpointData>(e);
  if (!data.ok() || frames.size() < 2 || data->offset != fetched_) return;  // stale or repeated
  const std::string part = run_dir_ + "/resume.ckpt.part";
  if (fetched_ == 0) {
    // A new file, never one a job planted under that name (a link would make root write
    // through it): the name is removed first and created exclusively, without following links.
    (void)::unlink(part.c_str());
    resume_part_ =
        UniqueFd(::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    // The ranks read it as the job's account.
    if (as_ && resume_part_.get() >= 0 && ::fchown(resume_part_.get(), as_->uid, as_->gid) != 0) {
      resume_part_ = UniqueFd();
    }
    resume_hash_ = std::make_unique<Sha256Stream>();
  }
  const std::string& bytes = frames[1];
  Status written = resume_part_.get() < 0
                       ? Status::IoError("cannot create " + part + ": " + std::strerror(errno))
                       : WriteAll(resume_part_.get(), bytes, part);
  if (!written.ok()) {
    failure_ = written.message();
    fetching_ = false;
    return;
  }
  resume_hash_->Update(bytes.data(), bytes.size());
  fetched_ += static_cast<int64_t>(bytes.size());
  if (fetched_ < data->bytes && !bytes.empty()) return RequestNextChunk(now);
  fetching_ = false;
  resume_part_ = UniqueFd();
  if (resume_hash_->FinishHex() != launch_.resume_sha256 || fetched_ != data->bytes) {
    failure_ = "the fetched checkpoint does not match its sha256; not resuming from it";
    return;
  }
  std::filesystem::rename(part, run_dir_ + "/resume.ckpt");
  Note("fetched checkpoint " + std::to_string(launch_.resume_step) + " of job " +
       std::to_string(launch_.resume_job) + " (" + std::to_string(fetched_) + " bytes)");
  fetching_ = false;
  if (member_) {  // ready for the leader's kiln-rsh
    waiting_since_ = now;
    return;
  }
  Status started = StartProcess();
  if (!started.ok()) failure_ = "cannot start mpirun: " + started.message();
}

void JobRun::ForwardCheckpoint(const protocol::TrainCheckpoint& c) {
  // The path comes from a child process, and names a file in a folder the job's account can
  // write: it must be a file directly in this attempt's checkpoint folder, reached through no
  // link below the folder the agent trusts (its work dir, or the spec's storage path), a regular
  // file of the account's with the size it claims. Nothing is resolved or followed, so the job
  // can neither point the agent elsewhere nor learn of files it cannot see.
  const std::filesystem::path reported(c.path);
  const std::string name = reported.filename().string();
  if (reported.parent_path().string() != checkpoint_dir_ || name.size() < 4 ||
      name.compare(name.size() - 3, 3, ".pt") != 0) {
    return Note("ignoring a checkpoint report outside the checkpoint folder: " + c.path);
  }
  std::error_code ec;
  const std::string work = std::filesystem::weakly_canonical(config_.work_dir, ec).string();
  const std::string trusted = shared_fs_ ? spec_.checkpoint.storage_path : work;
  const std::string relative =
      shared_fs_ ? "job-" + std::to_string(job_id_)
                 : run_dir_.substr(std::min(run_dir_.size(), config_.work_dir.size() + 1)) +
                       "/checkpoints";
  const std::string path = trusted + "/" + relative + "/" + name;
  auto opened = OpenRegularNoFollow(path, trusted);
  struct stat st {};
  if (!opened.ok() || ::fstat(opened->get(), &st) != 0 || st.st_size != c.bytes ||
      st.st_uid != owner()) {
    return Note("checkpoint at step " + std::to_string(c.step) +
                " is not a regular file of the job's account of the reported size" +
                (opened.ok() ? std::string("") : ": " + opened.status().message()));
  }
  PendingUpload upload{job_id_,
                       attempt_,
                       c.step,
                       c.epoch,
                       c.metrics.is_object() ? c.metrics : nlohmann::json::object(),
                       path,
                       c.bytes,
                       c.sha256,
                       shared_fs_,
                       spec_.checkpoint.keep_last,
                       trusted};
  upload.owner = owner();
  on_checkpoint_(std::move(upload));
}

}  // namespace kiln::agent
