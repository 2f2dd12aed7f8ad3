#include "worker/agent/run_dir_janitor.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace kiln::agent {

namespace {

Millis ModifiedMs(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return static_cast<Millis>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// "123" -> 123; nullopt-like -1 for anything else.
int64_t ParseId(const std::string& text) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return -1;
  }
  return std::strtoll(text.c_str(), nullptr, 10);
}

}  // namespace

std::vector<std::string> RunDirsToRemove(const std::vector<RunDirInfo>& dirs,
                                         const std::set<std::pair<int64_t, int64_t>>& in_use,
                                         Millis now_wall_ms, Millis keep_ms) {
  std::vector<std::string> out;
  if (keep_ms <= 0) return out;
  for (const auto& d : dirs) {
    if (in_use.count({d.job_id, d.attempt}) > 0) continue;
    if (now_wall_ms - d.modified_ms <= keep_ms) continue;
    out.push_back(d.path);
  }
  return out;
}

std::vector<RunDirInfo> ListRunDirs(const std::string& work_dir) {
  std::vector<RunDirInfo> dirs;
  // increment(ec), not ++: a directory that goes away or cannot be read ends the walk quietly.
  std::error_code ec;
  std::filesystem::directory_iterator jobs_it(work_dir + "/jobs", ec), end;
  for (; !ec && jobs_it != end; jobs_it.increment(ec)) {
    const std::filesystem::directory_entry& job = *jobs_it;
    std::error_code probe;
    const int64_t job_id = ParseId(job.path().filename().string());
    if (job_id < 0 || !job.is_directory(probe) || job.is_symlink(probe)) continue;
    std::error_code inner;
    std::filesystem::directory_iterator runs_it(job.path(), inner);
    for (; !inner && runs_it != end; runs_it.increment(inner)) {
      const std::filesystem::directory_entry& run = *runs_it;
      const std::string name = run.path().filename().string();
      if (name.rfind("attempt-", 0) != 0 || !run.is_directory(probe) || run.is_symlink(probe)) {
        continue;
      }
      const int64_t attempt = ParseId(name.substr(8));
      if (attempt < 0) continue;
      const std::string path = run.path().string();
      dirs.push_back({job_id, attempt, path,
                      std::max(ModifiedMs(path), ModifiedMs(path + "/output.log"))});
    }
  }
  return dirs;
}

void MarkRunDirEnded(const std::string& work_dir, int64_t job_id, int64_t attempt) {
  const std::string path = work_dir + "/jobs/" + std::to_string(job_id) + "/attempt-" +
                           std::to_string(attempt);
  (void)::utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
}

Millis JanitorInterval(Millis keep_ms) {
  return std::clamp<Millis>(keep_ms / 10, 1000, 10 * 60 * 1000);
}

int RemoveRunDirs(const std::vector<std::string>& paths) {
  int removed = 0;
  std::error_code ec;
  for (const auto& p : paths) {
    // remove_all does not follow symlinks inside the tree: a link a job left points nowhere new.
    if (std::filesystem::remove_all(p, ec) > 0 && !ec) ++removed;
    const auto parent = std::filesystem::path(p).parent_path();
    if (std::filesystem::is_empty(parent, ec) && !ec) std::filesystem::remove(parent, ec);
  }
  return removed;
}

}  // namespace kiln::agent
