// Checkpoint bytes under the state dir, content-addressed: <dir>/<sha256>. Uploads arrive in
// chunks into <dir>/uploads/<sha256>.part and become a blob only after their hash is verified,
// so a stored blob is always whole. Used by the scheduler's loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/file_util.h"

#include "common/status.h"

namespace kiln::service {

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  Status Init();  // creates the folder and its uploads/ subfolder

  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const { return dir_ + "/" + sha256; }
  void Remove(const std::string& sha256);

  // Bytes of the upload in progress for sha256 (0 when none).
  int64_t PartSize(const std::string& sha256) const;
  // Appends `bytes` at `offset`, which must equal PartSize(sha256).
  Status AppendPart(const std::string& sha256, int64_t offset, const std::string& bytes);
  // Verifies the part's hash and size; on success makes it the blob, on mismatch discards it.
  Status FinishPart(const std::string& sha256, int64_t expected_bytes);
  void DiscardPart(const std::string& sha256);
  // Removes the parts not written to since `before` (wall-clock ms): abandoned uploads. Returns
  // how many.
  int RemovePartsUntouchedSince(Millis before);

 private:
  std::string PartPath(const std::string& sha256) const;
  std::string dir_;
  // Hash of each part so far, updated as chunks arrive, so finishing an upload needs no second
  // pass over its bytes. Lost on restart: a part resumed then is hashed from its file once.
  struct PartHash {
    std::unique_ptr<Sha256Stream> stream = std::make_unique<Sha256Stream>();
    int64_t bytes = 0;
  };
  std::map<std::string, PartHash> part_hashes_;
};

bool IsHexSha256(const std::string& s);

}  // namespace kiln::service
