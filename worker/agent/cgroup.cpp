#include "worker/agent/cgroup.h"

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

int64_t OomKillsIn(const std::string& memory_events) {
  std::istringstream lines(memory_events);
  std::string key;
  int64_t value = 0;
  while (lines >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
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
  // The agent leaves ROOT for a leaf of its own before controllers are enabled below ROOT.
  const std::string agent = root + "/agent";
  if (::mkdir(agent.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IoError("cannot create " + agent + ": " + Errno() +
                           " (is the cgroup delegated to this agent's user?)");
  }
  KILN_RETURN_IF_ERROR(WriteControl(agent + "/cgroup.procs", std::to_string(::getpid())));
  auto controllers = ReadFile(root + "/cgroup.controllers");
  if (!controllers.ok()) return controllers.status();
  std::string enable;
  for (const char* c : {"memory", "pids"}) {
    std::istringstream names(*controllers);
    std::string name;
    while (names >> name) {
      if (name == c) enable += std::string(enable.empty() ? "" : " ") + "+" + c;
    }
  }
  if (enable.find("+memory") == std::string::npos) {
    return Status::FailedPrecondition("--cgroup " + root +
                                      ": the memory controller is not available there (its "
                                      "cgroup.controllers lists: " +
                                      TrimWhitespace(*controllers) + ")");
  }
  KILN_RETURN_IF_ERROR(WriteControl(root + "/cgroup.subtree_control", enable));
  return DelegatedCgroup(root);
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
  return events.ok() ? OomKillsIn(*events) : 0;
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
