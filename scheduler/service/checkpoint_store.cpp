#include "scheduler/service/checkpoint_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/file_util.h"

namespace kiln::service {

namespace {

Status Errno(const std::string& what) {
  return Status::IoError(what + ": " + std::strerror(errno));
}

Status WriteAll(int fd, const char* data, size_t size, off_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, data + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

bool IsHexSha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status CheckpointStore::Init() { return MakeDirs(dir_ + "/uploads"); }

bool CheckpointStore::Has(const std::string& sha256) const {
  return IsHexSha256(sha256) && ::access(PathOf(sha256).c_str(), F_OK) == 0;
}

void CheckpointStore::Remove(const std::string& sha256) {
  if (IsHexSha256(sha256)) ::unlink(PathOf(sha256).c_str());
}

std::string CheckpointStore::PartPath(const std::string& sha256) const {
  return dir_ + "/uploads/" + sha256 + ".part";
}

int CheckpointStore::RemovePartsUntouchedSince(Millis before) {
  int removed = 0;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir_ + "/uploads", ec), end;
  for (; !ec && it != end; it.increment(ec)) {  // never throws: a disk error ends the sweep
    const std::filesystem::directory_entry& entry = *it;
    const std::string name = entry.path().filename().string();
    if (name.size() != 64 + 5 || name.substr(64) != ".part" || !IsHexSha256(name.substr(0, 64))) {
      continue;
    }
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    const Millis modified = static_cast<Millis>(st.st_mtim.tv_sec) * 1000 +
                            st.st_mtim.tv_nsec / 1000000;
    if (modified >= before) continue;
    DiscardPart(name.substr(0, 64));
    ++removed;
  }
  return removed;
}

int64_t CheckpointStore::PartSize(const std::string& sha256) const {
  struct stat st;
  if (!IsHexSha256(sha256) || ::stat(PartPath(sha256).c_str(), &st) != 0) return 0;
  return st.st_size;
}

Status CheckpointStore::AppendPart(const std::string& sha256, int64_t offset,
                                   const std::string& bytes) {
  if (!IsHexSha256(sha256)) return Status::InvalidArgument("sha256: must be 64 lowercase hex digits");
  if (offset != PartSize(sha256)) {
    return Status::FailedPrecondition("chunk at " + std::to_string(offset) + ", upload holds " +
                                      std::to_string(PartSize(sha256)));
  }
  int fd = ::open(PartPath(sha256).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open " + PartPath(sha256));
  Status s = WriteAll(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
  ::close(fd);
  if (!s.ok()) return s;
  auto hash = part_hashes_.find(sha256);
  if (offset == 0) {
    part_hashes_.erase(sha256);
    hash = part_hashes_.emplace(sha256, PartHash{}).first;
  }
  if (hash != part_hashes_.end() && hash->second.bytes == offset) {
    hash->second.stream->Update(bytes.data(), bytes.size());
    hash->second.bytes += static_cast<int64_t>(bytes.size());
  }
  return Status::Ok();
}

Status CheckpointStore::FinishPart(const std::string& sha256, int64_t expected_bytes) {
  const std::string part = PartPath(sha256);
  const int64_t size = PartSize(sha256);
  if (size != expected_bytes) {
    DiscardPart(sha256);
    return Status::InvalidArgument("upload is " + std::to_string(size) + " bytes, expected " +
                                   std::to_string(expected_bytes));
  }
  Result<std::string> actual = Status::Internal("unhashed");
  auto hash = part_hashes_.find(sha256);
  if (hash != part_hashes_.end() && hash->second.bytes == expected_bytes) {
    actual = hash->second.stream->FinishHex();
  } else {
    actual = Sha256OfFile(part);
  }
  part_hashes_.erase(sha256);
  if (!actual.ok()) return actual.status();
  if (*actual != sha256) {
    DiscardPart(sha256);
    return Status::InvalidArgument("uploaded bytes hash to " + *actual + ", expected " + sha256);
  }
  int fd = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return Errno("cannot sync " + part);
  }
  ::close(fd);
  if (::rename(part.c_str(), PathOf(sha256).c_str()) != 0) return Errno("cannot rename " + part);
  int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return Status::Ok();
}

void CheckpointStore::DiscardPart(const std::string& sha256) {
  part_hashes_.erase(sha256);
  if (IsHexSha256(sha256)) ::unlink(PartPath(sha256).c_str());
}

}  // namespace kiln::service
