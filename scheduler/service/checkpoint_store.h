// Checkpoint bytes under the state dir, content-addressed: <dir>/<sha256>. A blob is written
// atomically and verified against its hash before it is stored, so a stored blob is always whole.
#pragma once

#include <string>

#include "common/status.h"

namespace kiln::service {

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  Status Init();
  // Fails with InvalidArgument when the bytes do not hash to sha256.
  Status Put(const std::string& sha256, const std::string& bytes);
  Result<std::string> Get(const std::string& sha256) const;
  void Remove(const std::string& sha256);
  std::string PathOf(const std::string& sha256) const { return dir_ + "/" + sha256; }

 private:
  std::string dir_;
};

}  // namespace kiln::service
