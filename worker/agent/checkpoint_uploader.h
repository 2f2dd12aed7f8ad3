// Sends the checkpoints rank 0 writes to the scheduler, one at a time, in chunks (bounded memory:
// at most kWindow chunks of kChunkBytes are read and in flight), resuming after a reconnect from
// the offset the scheduler holds, and starting again (up to kMaxTries) when the scheduler finds
// the upload corrupt. The protocol is described in common/protocol/messages.h. Training never
// waits for it: the trainer only writes the file and reports its path. When checkpoints arrive
// faster than they upload, only the newest keep_last waiting ones of an attempt are kept.
// Owned and driven by the Agent's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"

namespace kiln::agent {

struct PendingUpload {
  int64_t job_id = 0;
  int64_t attempt = 0;
  int64_t step = 0;
  int64_t epoch = 0;
  nlohmann::json metrics = nlohmann::json::object();
  std::string path;
  int64_t bytes = 0;
  std::string sha256;
  bool shared_fs = false;  // record the path only, upload nothing
  int keep_last = 3;       // local files of this folder to keep once uploaded (scheduler storage)
  // A folder above `path` that the job cannot replace (the agent's work dir, or the spec's
  // storage path); below it no link is followed.
  std::string trusted_dir;
  std::optional<uid_t> owner;  // the job's account: only its files are removed
};

class CheckpointUploader {
 public:
  static constexpr int64_t kChunkBytes = 8 << 20;
  static constexpr int kWindow = 4;
  static constexpr int kMaxTries = 3;
  static constexpr Millis kStallMs = 10000;

  using Sink = std::function<void(transport::Frames)>;
  // Writes a line into the job's log.
  using Note = std::function<void(int64_t job_id, int64_t attempt, const std::string& line)>;

  CheckpointUploader(const Clock& clock, Sink sink, Note note);

  void Enqueue(PendingUpload upload);
  void OnOffset(const protocol::CheckpointOffset& offset);
  void OnDone(const protocol::CheckpointDone& done);
  // After a reconnect: announce the current upload again; the scheduler answers where to resume.
  void Restart();
  // Called every loop turn: an upload that heard nothing for kStallMs is announced again (a
  // reply can be lost without the connection being seen to drop).
  void Pump();
  bool HasPendingFor(int64_t job_id, int64_t attempt) const;
  bool idle() const { return queue_.empty(); }

 private:
  void Begin();
  void SendChunks();
  void Finish(bool ok, const std::string& reason);

  const Clock& clock_;
  Sink sink_;
  Note note_;
  std::deque<PendingUpload> queue_;
  int64_t acked_ = 0;  // bytes the scheduler holds
  int64_t next_ = 0;   // next offset to send
  bool waiting_for_offset_ = false;
  int tries_ = 0;
  Millis started_at_ = 0;
  Millis last_progress_at_ = 0;
  int64_t skipped_ = 0;  // waiting checkpoints dropped for newer ones of the same attempt
};

}  // namespace kiln::agent
