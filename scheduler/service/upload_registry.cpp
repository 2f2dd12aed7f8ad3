#include "scheduler/service/upload_registry.h"

#include <spdlog/spdlog.h>

namespace kiln::service {

UploadRegistry::ChunkResult UploadRegistry::Announce(const CheckpointRecord& record,
                                                     const std::string& node) {
  ChunkResult result;
  result.kind = ChunkResult::kContinue;
  const int64_t have = blobs_.PartSize(record.sha256);
  if (have < record.bytes) {
    uploads_[record.sha256] = {record, node};
    result.offset = have;
    return result;
  }
  // Whole already: the worker would have nothing left to send, and this registry would wait for
  // a chunk forever (the agent's exit waits for its uploads: the job would never end).
  uploads_.erase(record.sha256);
  Status finished = blobs_.FinishPart(record.sha256, record.bytes);  // discards a bad part
  if (finished.ok()) {
    result.kind = ChunkResult::kComplete;
    result.record = record;
    return result;
  }
  spdlog::warn(
      "checkpoint upload of job {} step {}: the bytes held were not it ({}); starting "
      "it again",
      record.job_id, record.step, finished.message());
  blobs_.DiscardPart(record.sha256);
  uploads_[record.sha256] = {record, node};
  result.offset = 0;
  return result;
}

UploadRegistry::ChunkResult UploadRegistry::Chunk(const std::string& sha256,
                                                  const std::string& node, int64_t offset,
                                                  const std::string& bytes) {
  ChunkResult result;
  auto upload = uploads_.find(sha256);
  if (upload == uploads_.end()) {
    result.reason = "no upload in progress; send ckpt_begin";
    return result;
  }
  if (upload->second.node != node) {
    result.reason = "this upload was announced by another worker";
    return result;
  }
  const int64_t have = blobs_.PartSize(sha256);
  if (offset != have) {
    // A duplicate (offset < have) is acknowledged; a gap (offset > have) makes the worker rewind.
    result.kind = ChunkResult::kContinue;
    result.offset = have;
    result.resync = offset > have;
    return result;
  }
  const CheckpointRecord record = upload->second.record;
  auto reject = [&](const std::string& reason) {
    blobs_.DiscardPart(sha256);
    uploads_.erase(sha256);
    spdlog::warn("checkpoint upload of job {} step {} rejected: {}", record.job_id, record.step,
                 reason);
    result.kind = ChunkResult::kRejected;
    result.reason = reason;
    return result;
  };
  if (have + static_cast<int64_t>(bytes.size()) > record.bytes) {
    return reject("upload is longer than the " + std::to_string(record.bytes) + " bytes announced");
  }
  Status appended = blobs_.AppendPart(sha256, offset, bytes);
  if (!appended.ok()) return reject(appended.message());
  const int64_t now_have = have + static_cast<int64_t>(bytes.size());
  if (now_have < record.bytes) {
    result.kind = ChunkResult::kContinue;
    result.offset = now_have;
    return result;
  }
  Status finished = blobs_.FinishPart(sha256, record.bytes);
  if (!finished.ok()) return reject(finished.message());
  uploads_.erase(sha256);
  result.kind = ChunkResult::kComplete;
  result.record = record;
  return result;
}

}  // namespace kiln::service
