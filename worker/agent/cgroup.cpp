#include "worker/agent/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/file_util.h"
#include "common/quantities.h"

namespace kiln::agent {

namespace {

std::string Errno() { return std::strerror(errno); }

// Writes `value` to an existing control file (cgroup files are never created by writing).
Status WriteControl(const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status::IoError("cannot open " + path + ": " + Errno());
  const ssize_t written = ::write(fd, value.data(), value.size());
  const int saved = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(value.size())) {
    errno = saved;
    return Status::IoError("cannot write \"" + value + "\" to " + path + ": " + Errno());
  }
  return Status::Ok();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

Result<std::string> OwnCgroupFolder(const std::string& proc_self_cgroup, const std::string& mount) {
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string path = line.substr(3);
    if (path.empty() || path[0] != '/') break;
    if (path == "/") {
      return Status::FailedPrecondition(
          "this process is in the root cgroup, which is nobody's to delegate: run the agent "
          "under systemd with Delegate=yes (docs/operations.md), or name the delegated folder");
    }
    return mount + path;
  }
  return Status::NotFound(
      "this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no \"0::\" line); "
      "--cgroup needs a cgroup v2 (unified) system");
}

int64_t LimitOomKillsIn(const std::string& memory_events) {
  std::istringstream lines(memory_events);
  std::string key;
  int64_t value = 0, oom = 0, kills = 0;
  while (lines >> key >> value) {
    if (key == "oom") oom = value;
    if (key == "oom_kill") kills = value;
  }
  // oom_kill also counts kills of the node running out of memory as a whole; only with "oom"
  // (this cgroup reached its memory.max) were they the attempt's own doing.
  return oom > 0 ? kills : 0;
}

std::string CgroupOomReason(int64_t ranks, int64_t memory_per_rank, int64_t job_id,
                            const std::string& node) {
  return "OutOfMemory: the " + std::to_string(ranks) + (ranks == 1 ? " rank" : " ranks") +
         " of job " + std::to_string(job_id) + " on node " + node +
         " reached their cgroup's memory.max of " + FormatSize(ranks * memory_per_rank) +
         " (memory_per_rank " + FormatSize(memory_per_rank) +
         " each); the kernel killed the attempt";
}

Result<DelegatedCgroup> DelegatedCgroup::Open(const std::string& root_arg, bool require_cgroup2) {
  std::string root = root_arg;
  if (root == "self") {
    auto text = ReadFile("/proc/self/cgroup");
    if (!text.ok()) return text.status();
    auto own = OwnCgroupFolder(*text);
    if (!own.ok()) return own.status();
    root = *own;
  }
  struct stat st;
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("--cgroup " + root + ": not a folder");
  }
  if (require_cgroup2) {
    struct statfs fs;
    if (::statfs(root.c_str(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
      return Status::InvalidArgument("--cgroup " + root +
                                     ": not a cgroup v2 folder (mount cgroup2 at /sys/fs/cgroup, "
                                     "and delegate a cgroup to the agent: docs/operations.md)");
    }
  }
  // The root cgroup has no memory.max, nor has a cgroup whose parent did not enable the memory
  // controller for it (systemd's Delegate=yes does).
  if (require_cgroup2 && !Exists(root + "/memory.max")) {
    return Status::FailedPrecondition(
        "--cgroup " + root +
        ": no memory.max there: it is the root cgroup, or the memory "
        "controller is not enabled for it (systemd: Delegate=yes on the agent's unit)");
  }
  // The agent leaves ROOT for a leaf of its own before controllers are enabled below ROOT.
  const std::string agent = root + "/agent";
  if (::mkdir(agent.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IoError("cannot create " + agent + ": " + Errno() +
                           " (is the cgroup delegated to this agent's user?)");
  }
  KILN_RETURN_IF_ERROR(WriteControl(agent + "/cgroup.procs", std::to_string(::getpid())));
  auto controllers = ReadFile(root + "/cgroup.controllers");
  if (!controllers.ok()) return controllers.status();
  bool has_memory = false;
  {
    std::istringstream names(*controllers);
    std::string name;
    while (names >> name) has_memory = has_memory || name == "memory";
  }
  if (!has_memory) {
    return Status::FailedPrecondition("--cgroup " + root +
                                      ": the memory controller is not available there (its "
                                      "cgroup.controllers lists: " +
                                      TrimWhitespace(*controllers) + ")");
  }
  KILN_RETURN_IF_ERROR(WriteControl(root + "/cgroup.subtree_control", "+memory"));
  DelegatedCgroup cgroup(root);
  cgroup.SweepLeftovers({});  // attempts of an agent that ran here before
  return cgroup;
}

Result<std::string> DelegatedCgroup::CreateAttempt(const std::string& name,
                                                   int64_t memory_max_bytes) const {
  const std::string dir = root_ + "/" + name;
  if (Exists(dir) && !KillAndRemoveAttemptCgroup(dir)) {
    return Status::FailedPrecondition(dir + " still holds processes of an earlier attempt");
  }
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return Status::IoError("cannot create " + dir + ": " + Errno());
  }
  const std::string max = memory_max_bytes > 0 ? std::to_string(memory_max_bytes) : "max";
  KILN_RETURN_IF_ERROR(WriteControl(dir + "/memory.max", max));
  // Optional where swap accounting is off: then there is no swap to dodge the limit through.
  if (Exists(dir + "/memory.swap.max")) {
    KILN_RETURN_IF_ERROR(
        WriteControl(dir + "/memory.swap.max", memory_max_bytes > 0 ? "0" : "max"));
  }
  KILN_RETURN_IF_ERROR(WriteControl(dir + "/memory.oom.group", "1"));
  return dir;
}

int64_t OomKillsOf(const std::string& attempt_cgroup) {
  auto events = ReadFile(attempt_cgroup + "/memory.events");
  return events.ok() ? LimitOomKillsIn(*events) : 0;
}

bool KillAndRemoveAttemptCgroup(const std::string& dir) {
  if (!Exists(dir)) return true;
  if (!WriteControl(dir + "/cgroup.kill", "1").ok()) {
    auto procs = ReadFile(dir + "/cgroup.procs");
    if (procs.ok()) {
      std::istringstream pids(*procs);
      pid_t pid = 0;
      while (pids >> pid) {
        if (pid > 0) ::kill(pid, SIGKILL);
      }
    }
  }
  return ::rmdir(dir.c_str()) == 0 || errno == ENOENT;
}

}  // namespace kiln::agent

namespace kiln::agent {

void DelegatedCgroup::Retire(const std::string& attempt_cgroup) const {
  if (!KillAndRemoveAttemptCgroup(attempt_cgroup)) retired_.push_back(attempt_cgroup);
}

void DelegatedCgroup::SweepLeftovers(const std::set<std::string>& live) const {
  for (auto it = retired_.begin(); it != retired_.end();) {
    it = KillAndRemoveAttemptCgroup(*it) ? retired_.erase(it) : std::next(it);
  }
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> leftovers;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind("job-", 0) == 0 && live.count(root_ + "/" + name) == 0) {
      leftovers.push_back(root_ + "/" + name);
    }
  }
  ::closedir(dir);
  for (const auto& path : leftovers) (void)KillAndRemoveAttemptCgroup(path);
}

}  // namespace kiln::agent
