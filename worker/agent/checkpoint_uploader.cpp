#include "worker/agent/checkpoint_uploader.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/file_util.h"
#include "common/safe_open.h"

namespace kiln::agent {

CheckpointUploader::CheckpointUploader(const Clock& clock, Sink sink, Note note)
    : clock_(clock), sink_(std::move(sink)), note_(std::move(note)) {}

void CheckpointUploader::Enqueue(PendingUpload upload) {
  const int64_t job_id = upload.job_id, attempt = upload.attempt;
  const size_t keep = static_cast<size_t>(std::max(1, upload.keep_last));
  queue_.push_back(std::move(upload));
  if (queue_.size() == 1) {
    tries_ = 0;
    Begin();
    return;
  }
  // Checkpoints that come faster than they upload would queue without bound (a tiny model
  // checkpointing every few milliseconds): of those still waiting (the one in flight always
  // finishes), keep the newest keep_last of this attempt; retention would drop the others anyway.
  size_t waiting = 0;
  for (size_t i = 1; i < queue_.size(); ++i) {
    waiting += queue_[i].job_id == job_id && queue_[i].attempt == attempt;
  }
  for (size_t i = 1; i < queue_.size() && waiting > keep;) {
    if (queue_[i].job_id != job_id || queue_[i].attempt != attempt) {
      ++i;
      continue;
    }
    if (skipped_ % 100 == 0) {
      note_(job_id, attempt,
            "checkpoints come faster than they upload: skipping step " +
                std::to_string(queue_[i].step) + " (" + std::to_string(skipped_ + 1) +
                " skipped so far; raise checkpoint.every_steps)");
    }
    ++skipped_;
    // On a shared file system no row will ever name the file, so retention would never free it.
    if (queue_[i].shared_fs) {
      (void)UnlinkNoFollow(queue_[i].path, queue_[i].trusted_dir, queue_[i].owner);
    }
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
    --waiting;
  }
}

void CheckpointUploader::Begin() {
  if (queue_.empty()) return;
  const PendingUpload& u = queue_.front();
  protocol::CheckpointBegin begin{u.job_id, u.attempt, u.step, u.epoch, u.metrics, u.bytes,
                                  u.sha256, std::nullopt};
  if (u.shared_fs) begin.path = u.path;
  acked_ = next_ = 0;
  waiting_for_offset_ = true;
  started_at_ = last_progress_at_ = clock_.MonotonicMs();
  ++tries_;
  sink_(protocol::Encode(begin));
}

void CheckpointUploader::Restart() {
  if (!queue_.empty()) {
    --tries_;  // a reconnect is not a failed try
    Begin();
  }
}

void CheckpointUploader::Pump() {
  if (queue_.empty() || clock_.MonotonicMs() - last_progress_at_ < kStallMs) return;
  spdlog::warn("checkpoint upload of step {} stalled; announcing it again", queue_.front().step);
  Restart();
}

void CheckpointUploader::OnOffset(const protocol::CheckpointOffset& m) {
  if (queue_.empty() || m.sha256 != queue_.front().sha256) return;
  last_progress_at_ = clock_.MonotonicMs();
  if (waiting_for_offset_ || m.resync) {
    acked_ = next_ = m.offset;
    waiting_for_offset_ = false;
  } else {
    acked_ = std::max(acked_, m.offset);
  }
  SendChunks();
}

void CheckpointUploader::SendChunks() {
  const PendingUpload& u = queue_.front();
  while (next_ < u.bytes && next_ - acked_ < kWindow * kChunkBytes) {
    // The file is in a folder the job's account can write: no links, a regular file, and never
    // past the size announced.
    auto chunk = ReadRegularRange(u.path, next_, std::min(kChunkBytes, u.bytes - next_), u.bytes,
                                  u.trusted_dir);
    if (!chunk.ok() || chunk->empty()) {
      return Finish(false, "cannot read " + u.path + " to upload it: " +
                               (chunk.ok() ? "file shrank" : chunk.status().message()));
    }
    const int64_t size = static_cast<int64_t>(chunk->size());
    sink_(protocol::Encode(protocol::CheckpointChunk{u.sha256, next_}, "",
                           {std::move(chunk).value()}));
    next_ += size;
  }
}

void CheckpointUploader::OnDone(const protocol::CheckpointDone& m) {
  if (queue_.empty() || m.sha256 != queue_.front().sha256) return;
  if (!m.ok && tries_ < kMaxTries && m.reason.find("no job") == std::string::npos) {
    spdlog::warn("checkpoint upload of step {} refused ({}); starting it again",
                 queue_.front().step, m.reason);
    Begin();
    return;
  }
  Finish(m.ok, m.reason);
}

void CheckpointUploader::Finish(bool ok, const std::string& reason) {
  PendingUpload u = queue_.front();
  queue_.pop_front();
  const double seconds = std::max(1, static_cast<int>(clock_.MonotonicMs() - started_at_)) / 1000.0;
  if (ok) {
    spdlog::info("job {} checkpoint at step {}: {} ({} bytes in {:.2f} s, {:.0f} MB/s)", u.job_id,
                 u.step, u.shared_fs ? "recorded" : "uploaded", u.bytes, seconds,
                 u.bytes / seconds / 1e6);
    if (!u.shared_fs) {
      std::vector<std::string> in_use;
      for (const auto& q : queue_) in_use.push_back(q.path);
      RemoveAllButNewestNoFollow(std::filesystem::path(u.path).parent_path().string(),
                                 u.trusted_dir, ".pt", u.keep_last, in_use, u.owner);
    }
  } else {
    note_(u.job_id, u.attempt, "checkpoint at step " + std::to_string(u.step) +
                                   " not stored by the scheduler: " + reason);
  }
  tries_ = 0;
  Begin();
}

bool CheckpointUploader::HasPendingFor(int64_t job_id, int64_t attempt) const {
  return std::any_of(queue_.begin(), queue_.end(), [&](const PendingUpload& u) {
    return u.job_id == job_id && u.attempt == attempt;
  });
}

}  // namespace kiln::agent
