// Opening files, as root, in folders that someone else may control (a job's run dir, which its
// account can write, or a shared file system) without being tricked into reading or writing
// something else: no component of the path below a trusted prefix may be a symlink (each is
// opened with openat and O_NOFOLLOW, so a link swapped in between checks is never followed
// either), the file must be a regular file (a FIFO would block the daemon, a device would read
// forever), with one link (a hard link could be another user's file), and a read never goes past
// the size that was recorded for it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

// An open file descriptor (closed by the destructor).
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Up to `length` bytes at `offset` of the open file `fd` (fewer at its end); `path` names it in
// errors. Retries interrupted reads.
Result<std::string> ReadAt(int fd, int64_t offset, int64_t length, const std::string& path);
// Writes all of `data` at the file's position (retrying short and interrupted writes).
Status WriteAll(int fd, const std::string& data, const std::string& path);

// Opens the absolute `path` for reading. `trusted`: a folder the daemon itself controls (its work
// dir; "" for none) under which `path` lies; its own components may be links (an admin's
// choice), the components below it may not. Fails NotFound, PermissionDenied, or
// InvalidArgument naming the path ("... is a symbolic link", "... is not a regular file").
Result<UniqueFd> OpenRegularNoFollow(const std::string& path, const std::string& trusted = "");
// Up to `length` bytes at `offset` of such a file, refused when the file is larger than
// `max_size` (the size recorded for it: it has been changed since).
Result<std::string> ReadRegularRange(const std::string& path, int64_t offset, int64_t length,
                                     int64_t max_size, const std::string& trusted = "");
// The folder `dir`, opened the same way (no link at any component below `trusted`).
Result<UniqueFd> OpenDirNoFollow(const std::string& dir, const std::string& trusted = "");
// Removes the file `path` (not a folder), reached the same way; with `owner`, only a file that
// account owns.
Status UnlinkNoFollow(const std::string& path, const std::string& trusted = "",
                      std::optional<uid_t> owner = std::nullopt);
// In `dir` (reached the same way): removes all but the newest `keep` regular files named
// *`extension`, never one named in `in_use` (full paths) and, with `owner`, never one another
// account owns.
void RemoveAllButNewestNoFollow(const std::string& dir, const std::string& trusted,
                                const std::string& extension, int keep,
                                const std::vector<std::string>& in_use,
                                std::optional<uid_t> owner = std::nullopt);

}  // namespace kiln
