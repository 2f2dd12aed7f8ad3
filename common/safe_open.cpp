#include "common/safe_open.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/file_util.h"

namespace kiln {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

namespace {

std::vector<std::string> Components(const std::string& relative) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string::npos) end = relative.size();
    if (end > start) parts.push_back(relative.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

Status Refuse(const std::string& path, const std::string& why) {
  return Status::InvalidArgument(path + " " + why + "; refusing to open it");
}

}  // namespace

Result<std::string> ReadAt(int fd, int64_t offset, int64_t length, const std::string& path) {
  std::string out(static_cast<size_t>(std::max<int64_t>(0, length)), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                              static_cast<off_t>(offset) + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IoError("cannot read " + path + ": " + std::strerror(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError("cannot write " + path + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

namespace {

// Opens `path` below `trusted` as OpenRegularNoFollow describes; the last component as a folder
// when `want_dir`, else as anything but a link (the caller checks what it got).
Result<UniqueFd> OpenBelow(const std::string& path, const std::string& trusted, bool want_dir) {
  if (path.empty() || path[0] != '/') return Refuse(path, "is not an absolute path");
  std::string below = path;
  UniqueFd dir;
  std::string root = trusted;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!root.empty() && path.compare(0, root.size() + 1, root + "/") == 0) {
    dir = UniqueFd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) return OpenFailure("cannot open " + root);
    below = path.substr(root.size() + 1);
  } else {
    dir = UniqueFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) return OpenFailure("cannot open /");
  }
  const std::vector<std::string> parts = Components(below);
  if (parts.empty()) return Refuse(path, "names no file");
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "..") return Refuse(path, "contains ..");
    if (parts[i] == ".") continue;
    const bool last = i + 1 == parts.size();
    const int flags =
        O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last && !want_dir ? O_NONBLOCK : O_DIRECTORY);
    UniqueFd next(::openat(dir.get(), parts[i].c_str(), flags));
    if (next.get() < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        struct stat st {};
        if (::fstatat(dir.get(), parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode)) {
          return Refuse(path, "goes through a symbolic link (" + parts[i] + ")");
        }
      }
      return OpenFailure("cannot open " + path);
    }
    dir = std::move(next);
  }
  return dir;
}

// The folder and the name of `path`'s last component.
std::pair<std::string, std::string> SplitLast(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return {"", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Result<UniqueFd> OpenRegularNoFollow(const std::string& path, const std::string& trusted) {
  auto opened = OpenBelow(path, trusted, /*want_dir=*/false);
  if (!opened.ok()) return opened.status();
  UniqueFd fd = std::move(opened).value();
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return OpenFailure("cannot stat " + path);
  if (!S_ISREG(st.st_mode)) return Refuse(path, "is not a regular file");
  if (st.st_nlink != 1) return Refuse(path, "has other hard links");
  // Reads block normally from here on (O_NONBLOCK only kept the open from waiting on a FIFO).
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

Result<UniqueFd> OpenDirNoFollow(const std::string& dir, const std::string& trusted) {
  return OpenBelow(dir, trusted, /*want_dir=*/true);
}

Status UnlinkNoFollow(const std::string& path, const std::string& trusted,
                      std::optional<uid_t> owner) {
  const auto [folder, name] = SplitLast(path);
  if (name.empty() || name == "." || name == "..") return Refuse(path, "names no file");
  auto dir = OpenDirNoFollow(folder, trusted);
  if (!dir.ok()) return dir.status();
  struct stat st {};
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return OpenFailure("cannot stat " + path);
  }
  if (owner && st.st_uid != *owner) return Refuse(path, "belongs to another account");
  if (::unlinkat(dir->get(), name.c_str(), 0) != 0) return OpenFailure("cannot remove " + path);
  return Status::Ok();
}

void RemoveAllButNewestNoFollow(const std::string& dir, const std::string& trusted,
                                const std::string& extension, int keep,
                                const std::vector<std::string>& in_use,
                                std::optional<uid_t> owner) {
  auto opened = OpenDirNoFollow(dir, trusted);
  if (!opened.ok()) return;
  const int dir_fd = opened->get();
  DIR* listing = ::fdopendir(::dup(dir_fd));
  if (listing == nullptr) return;
  std::vector<std::pair<struct timespec, std::string>> files;
  while (const dirent* entry = ::readdir(listing)) {
    const std::string name = entry->d_name;
    if (name.size() <= extension.size() ||
        name.compare(name.size() - extension.size(), extension.size(), extension) != 0) {
      continue;
    }
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        (owner && st.st_uid != *owner)) {
      continue;
    }
    if (std::find(in_use.begin(), in_use.end(), dir + "/" + name) != in_use.end()) continue;
    files.push_back({st.st_mtim, name});
  }
  ::closedir(listing);
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    if (a.first.tv_sec != b.first.tv_sec) return a.first.tv_sec > b.first.tv_sec;
    if (a.first.tv_nsec != b.first.tv_nsec) return a.first.tv_nsec > b.first.tv_nsec;
    return a.second > b.second;
  });
  for (size_t i = static_cast<size_t>(std::max(keep, 0)); i < files.size(); ++i) {
    (void)::unlinkat(dir_fd, files[i].second.c_str(), 0);
  }
}

Result<std::string> ReadRegularRange(const std::string& path, int64_t offset, int64_t length,
                                     int64_t max_size, const std::string& trusted) {
  auto fd = OpenRegularNoFollow(path, trusted);
  if (!fd.ok()) return fd.status();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return OpenFailure("cannot stat " + path);
  if (st.st_size > max_size) {
    return Refuse(path, "has grown to " + std::to_string(st.st_size) + " bytes, past the " +
                            std::to_string(max_size) + " recorded");
  }
  if (offset < 0 || length < 0) return Status::InvalidArgument("offset and length must be >= 0");
  return ReadAt(fd->get(), offset, std::min<int64_t>(offset + length, max_size) - offset, path);
}

}  // namespace kiln
