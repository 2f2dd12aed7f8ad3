#include "scheduler/service/checkpoint_store.h"

#include <unistd.h>

#include "common/file_util.h"

namespace kiln::service {

namespace {

bool IsHexSha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

Status CheckpointStore::Init() { return MakeDirs(dir_); }

Status CheckpointStore::Put(const std::string& sha256, const std::string& bytes) {
  if (!IsHexSha256(sha256)) return Status::InvalidArgument("sha256: must be 64 lowercase hex digits");
  std::string actual = Sha256Hex(bytes);
  if (actual != sha256) {
    return Status::InvalidArgument("checkpoint bytes hash to " + actual + ", report says " + sha256);
  }
  if (::access(PathOf(sha256).c_str(), F_OK) == 0) return Status::Ok();
  return WriteFileAtomic(PathOf(sha256), bytes);
}

Result<std::string> CheckpointStore::Get(const std::string& sha256) const {
  if (!IsHexSha256(sha256)) return Status::InvalidArgument("sha256: must be 64 lowercase hex digits");
  return ReadFile(PathOf(sha256));
}

void CheckpointStore::Remove(const std::string& sha256) {
  if (IsHexSha256(sha256)) ::unlink(PathOf(sha256).c_str());
}

}  // namespace kiln::service
