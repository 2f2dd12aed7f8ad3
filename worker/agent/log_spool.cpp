#include "worker/agent/log_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include "common/safe_open.h"
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace kiln::agent {

namespace {

constexpr const char* kSpoolFile = "log.spool";
constexpr const char* kAckedFile = "log.acked";

// The acknowledged count, or 0 when the file is missing or not a number.
int64_t ReadAcked(int dir_fd) {
  const int fd = ::openat(dir_fd, kAckedFile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[32] = {};
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const ssize_t n = regular ? ::pread(fd, text, sizeof text - 1, 0) : -1;
  ::close(fd);
  if (n <= 0) return 0;
  return std::max<int64_t>(0, std::strtoll(text, nullptr, 10));
}

// Every line of the spool (regular file only), in order.
std::vector<std::string> ReadSpool(int dir_fd) {
  std::vector<std::string> lines;
  const int fd = ::openat(dir_fd, kSpoolFile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return lines;
  struct stat st {};
  // Only the spool the agent wrote: a regular file with one link (a hard link planted by a job
  // to a file it may not read would otherwise ship that file's lines to it).
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
      st.st_size > LogSpool::kMaxSpoolBytes + (1 << 20)) {
    ::close(fd);
    return lines;
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd, data.data(), data.size(), 0);
  ::close(fd);
  if (n < 0) return lines;
  data.resize(static_cast<size_t>(n));
  size_t start = 0;
  while (start < data.size()) {
    const size_t end = data.find('\n', start);
    if (end == std::string::npos) break;  // a torn last line was never shipped whole
    lines.push_back(data.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// An existing file of the spool, opened for writing only when it is still a regular file with
// one link (not a FIFO, device, or hard link that a job planted); -1 otherwise.
int OpenOwnFile(int dir_fd, const char* name, int flags) {
  const int fd = ::openat(dir_fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool ParseAttemptDir(const char* name, int64_t* attempt) {
  return std::sscanf(name, "attempt-%" SCNd64, attempt) == 1 && *attempt > 0;
}

}  // namespace

LogSpool::~LogSpool() {
  for (auto& [key, file] : files_) {
    if (file.spool_fd >= 0) ::close(file.spool_fd);
    if (file.acked_fd >= 0) ::close(file.acked_fd);
  }
}

std::string LogSpool::RunDir(int64_t job_id, int64_t attempt) const {
  return work_dir_ + "/jobs/" + std::to_string(job_id) + "/attempt-" + std::to_string(attempt);
}

LogSpool::File* LogSpool::Open(const Key& key) {
  auto found = files_.find(key);
  if (found != files_.end()) return found->second.spool_fd >= 0 ? &found->second : nullptr;
  File& file = files_[key];
  const std::string dir = RunDir(key.first, key.second);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) return nullptr;
  // New files, never whatever a job planted under these names (a link, a FIFO, a hard link to
  // someone else's file): the names are removed first and created exclusively.
  for (const char* name : {kSpoolFile, kAckedFile}) (void)::unlinkat(dir_fd, name, 0);
  file.spool_fd = ::openat(dir_fd, kSpoolFile,
                           O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  file.acked_fd =
      ::openat(dir_fd, kAckedFile, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  ::close(dir_fd);
  if (file.spool_fd < 0 || file.acked_fd < 0) {
    Abandon(key, file);
    return nullptr;
  }
  return &file;
}

void LogSpool::Abandon(const Key& key, File& file) {
  if (file.spool_fd >= 0) ::close(file.spool_fd);
  if (file.acked_fd >= 0) ::close(file.acked_fd);
  file.spool_fd = file.acked_fd = -1;
  const std::string dir = RunDir(key.first, key.second);
  ::unlink((dir + "/" + kSpoolFile).c_str());
  ::unlink((dir + "/" + kAckedFile).c_str());
}

void LogSpool::Append(int64_t job_id, int64_t attempt, const std::vector<std::string>& lines) {
  const Key key{job_id, attempt};
  File* file = Open(key);
  if (file == nullptr || file->full || lines.empty()) return;
  std::string data;
  for (const auto& line : lines) {
    data += line;
    data += '\n';
  }
  if (file->bytes + static_cast<int64_t>(data.size()) > kMaxSpoolBytes) {
    file->full = true;  // the rest is shipped from memory only
    return;
  }
  if (Status written = WriteAll(file->spool_fd, data, kSpoolFile); !written.ok()) {
    spdlog::warn(
        "job {} attempt {}: cannot spool output ({}); unacknowledged lines will not "
        "survive an agent restart",
        job_id, attempt, written.message());
    Abandon(key, *file);
    return;
  }
  file->lines += static_cast<int64_t>(lines.size());
  file->bytes += static_cast<int64_t>(data.size());
}

void LogSpool::Acknowledged(int64_t job_id, int64_t attempt, int64_t next_line) {
  auto found = files_.find({job_id, attempt});
  if (found == files_.end() || found->second.acked_fd < 0) return;
  char text[32];
  const int n = std::snprintf(text, sizeof text, "%020" PRId64 "\n", next_line);
  (void)!::pwrite(found->second.acked_fd, text, static_cast<size_t>(n), 0);
}

void LogSpool::Close(int64_t job_id, int64_t attempt) {
  auto found = files_.find({job_id, attempt});
  if (found == files_.end()) return;
  if (found->second.spool_fd >= 0) ::close(found->second.spool_fd);
  if (found->second.acked_fd >= 0) ::close(found->second.acked_fd);
  files_.erase(found);
}

std::vector<LogSpool::Unacknowledged> LogSpool::Recover() {
  std::vector<Unacknowledged> out;
  const std::string jobs_dir = work_dir_ + "/jobs";
  DIR* jobs = ::opendir(jobs_dir.c_str());
  if (jobs == nullptr) return out;
  while (dirent* j = ::readdir(jobs)) {
    char* end = nullptr;
    const int64_t job_id = std::strtoll(j->d_name, &end, 10);
    if (*end != '\0' || job_id <= 0) continue;
    const std::string job_dir = jobs_dir + "/" + j->d_name;
    DIR* attempts = ::opendir(job_dir.c_str());
    if (attempts == nullptr) continue;
    while (dirent* a = ::readdir(attempts)) {
      int64_t attempt = 0;
      if (!ParseAttemptDir(a->d_name, &attempt)) continue;
      const std::string dir = job_dir + "/" + a->d_name;
      const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (dir_fd < 0) continue;
      const int64_t acked = ReadAcked(dir_fd);
      std::vector<std::string> lines = ReadSpool(dir_fd);
      const int64_t total = static_cast<int64_t>(lines.size());
      if (acked < total) {
        // Continue this spool rather than start a new one, should more lines of it come.
        File file;
        file.spool_fd = OpenOwnFile(dir_fd, kSpoolFile, O_WRONLY | O_APPEND);
        file.acked_fd = OpenOwnFile(dir_fd, kAckedFile, O_WRONLY);
        file.lines = total;
        for (const auto& l : lines) file.bytes += static_cast<int64_t>(l.size()) + 1;
        files_[{job_id, attempt}] = file;
        int64_t first = total;  // the newest kMaxRecoverBytes of lines acked..total-1
        int64_t bytes = 0;
        for (int64_t n = total - 1; n >= acked; --n) {
          bytes += static_cast<int64_t>(lines[static_cast<size_t>(n)].size());
          if (bytes > kMaxRecoverBytes) break;
          first = n;
        }
        out.push_back(
            {job_id, attempt, first, std::vector<std::string>(lines.begin() + first, lines.end())});
      }
      ::close(dir_fd);
    }
    ::closedir(attempts);
  }
  ::closedir(jobs);
  return out;
}

}  // namespace kiln::agent
