// Checkpoint uploads in progress: which worker announced each one (only it may send the bytes),
// the checkpoint it will become, and its bytes so far.
//
// Durable state: the bytes, in the CheckpointStore's <sha256>.part file. The announcement itself
// is not persisted: an agent announces (ckpt_begin) again after every reconnect, and so after any
// scheduler restart, and continues from the offset answered from the part file. So a restart
// loses no uploaded byte, and a worker can never continue an upload it did not announce to this
// scheduler process.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "scheduler/service/checkpoint_store.h"
#include "scheduler/service/store.h"

namespace kiln::service {

class UploadRegistry {
 public:
  explicit UploadRegistry(CheckpointStore& blobs) : blobs_(blobs) {}

  // What an announcement or a chunk led to.
  struct ChunkResult {
    enum Kind {
      kContinue,  // send from `offset` next (`resync`: a gap; rewind there)
      kComplete,  // the blob is whole and verified: register `record`
      kRejected,  // refused (`reason`); a broken upload is discarded, the worker starts again
    } kind = kRejected;
    int64_t offset = 0;
    bool resync = false;
    std::string reason;
    CheckpointRecord record;
  };
  // `node` will upload the blob for `record`; a previous announcement of the same bytes is
  // replaced. Usually kContinue from the bytes already held. When they are all held already (a
  // scheduler killed while it finished the upload: the part is whole but was never made a
  // blob), the upload is finished now: kComplete, or kContinue from 0 if they were wrong.
  ChunkResult Announce(const CheckpointRecord& record, const std::string& node);
  // Bytes at `offset` of the upload of `sha256`, sent by `node`.
  ChunkResult Chunk(const std::string& sha256, const std::string& node, int64_t offset,
                    const std::string& bytes);

  size_t size() const { return uploads_.size(); }

 private:
  struct Upload {
    CheckpointRecord record;
    std::string node;  // the worker that announced it
  };
  CheckpointStore& blobs_;
  std::map<std::string, Upload> uploads_;  // by sha256
};

}  // namespace kiln::service
