#include "worker/agent/process_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::agent {

Result<ProcessGroup> ProcessGroup::Start(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& env, const std::string& cwd,
    const std::string& tag, const RunAs* as, int join_cgroup_fd) {
  if (argv.empty()) return Status::InvalidArgument("empty command");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::IoError(std::string("pipe: ") + std::strerror(errno));
  }
  // Everything the child needs is prepared before fork: after fork only async-signal-safe calls.
  // The job's variables replace inherited ones of the same name (getenv returns the first match).
  auto overridden = [&](const char* entry) {
    std::string name(entry, std::strcspn(entry, "="));
    if (name == "KILN_RUN_TAG") return true;
    for (const auto& kv : env) {
      if (kv.first == name) return true;
    }
    return false;
  };
  std::vector<std::string> env_strings;
  if (as != nullptr) {
    for (const auto& [k, v] : CleanEnvironment(*as)) {
      if (!overridden((k + "=").c_str())) env_strings.push_back(k + "=" + v);
    }
  } else {
    for (char** e = environ; *e != nullptr; ++e) {
      if (!overridden(*e)) env_strings.emplace_back(*e);
    }
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  env_strings.push_back("KILN_RUN_TAG=" + tag);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::IoError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    if (join_cgroup_fd >= 0 && ::write(join_cgroup_fd, "0", 1) != 1) {
      const char msg[] = "kiln-worker: cannot join the attempt's cgroup\n";
      (void)!::write(fds[1], msg, sizeof msg - 1);
      _exit(126);
    }
    ::setsid();  // new session and process group, led by this child
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    // Nothing of the agent's reaches the job: not its sockets, nor other attempts' output.log
    // (opened without O_CLOEXEC by std::ofstream), nor the spool.
    ::close_range(3, ~0U, 0);
    if (as != nullptr) {
      // Groups first, uid last: once the uid is dropped the others cannot change any more.
      if (::setgroups(as->groups.size(), as->groups.data()) != 0 || ::setgid(as->gid) != 0 ||
          ::setuid(as->uid) != 0 || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        const char msg[] = "kiln-worker: cannot take the job's account (setgroups/setgid/setuid)\n";
        (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(126);
      }
    }
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      const char msg[] = "kiln-worker: cannot enter the run directory\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      _exit(126);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvpe(args[0], args.data(), envp.data());
    const char msg[] = "kiln-worker: cannot exec the job command\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  ProcessGroup group;
  group.pid_ = pid;
  group.output_fd_ = fds[0];
  group.tag_ = tag;
  return group;
}

ProcessGroup::ProcessGroup(ProcessGroup&& o) noexcept { *this = std::move(o); }

ProcessGroup& ProcessGroup::operator=(ProcessGroup&& o) noexcept {
  if (this != &o) {
    if (output_fd_ >= 0) ::close(output_fd_);
    pid_ = o.pid_;
    output_fd_ = o.output_fd_;
    tag_ = std::move(o.tag_);
    partial_ = std::move(o.partial_);
    exit_ = o.exit_;
    o.pid_ = -1;
    o.output_fd_ = -1;
  }
  return *this;
}

ProcessGroup::~ProcessGroup() {
  if (output_fd_ >= 0) ::close(output_fd_);
}

std::vector<std::string> ProcessGroup::ReadLines(bool* eof) {
  std::vector<std::string> lines;
  *eof = false;
  if (output_fd_ < 0) {
    *eof = true;
    return lines;
  }
  // Bounded work per call, so a chatty job cannot starve the agent's other duties.
  char buf[65536];
  size_t read_total = 0;
  while (read_total < kMaxReadPerCall) {
    ssize_t n = ::read(output_fd_, buf, sizeof buf);
    if (n > 0) {
      partial_.append(buf, static_cast<size_t>(n));
      read_total += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) *eof = true;
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  size_t start = 0;
  while (start < partial_.size()) {
    size_t nl = partial_.find('\n', start);
    if (nl == std::string::npos) {
      if (partial_.size() - start < kMaxLineBytes) break;
      nl = start + kMaxLineBytes;  // an over-long line is split, never buffered without bound
      lines.push_back(partial_.substr(start, nl - start));
      start = nl;
      continue;
    }
    lines.push_back(partial_.substr(start, nl - start));
    start = nl + 1;
  }
  partial_.erase(0, start);
  if (*eof && !partial_.empty()) {
    lines.push_back(partial_);
    partial_.clear();
  }
  return lines;
}

std::optional<ExitStatus> ProcessGroup::TryReap() {
  if (exit_ || pid_ < 0) return exit_;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    ExitStatus s;
    if (WIFEXITED(status)) s.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) s.signal = WTERMSIG(status);
    exit_ = s;
  }
  return exit_;
}

void ProcessGroup::SignalGroup(int signal) {
  if (pid_ > 0) ::kill(-pid_, signal);
}

std::string RunTag(const std::string& node, int64_t job_id, int64_t attempt) {
  return node + "-" + std::to_string(job_id) + "-" + std::to_string(attempt);
}

namespace {

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Splits "<node>-<job>-<attempt>" from the right; false if it does not have that shape.
bool SplitTag(const std::string& tag, std::string* node, std::string* job) {
  size_t last = tag.rfind('-');
  if (last == std::string::npos || last == 0 || !AllDigits(tag.substr(last + 1))) return false;
  size_t middle = tag.rfind('-', last - 1);
  if (middle == std::string::npos || !AllDigits(tag.substr(middle + 1, last - middle - 1))) {
    return false;
  }
  *node = tag.substr(0, middle);
  *job = tag.substr(middle + 1, last - middle - 1);
  return true;
}

}  // namespace

TagMatcher ExactTag(const std::string& tag) {
  return [tag](const std::string& t) { return t == tag; };
}

TagMatcher AnyAttemptOfNode(const std::string& node) {
  return [node](const std::string& t) {
    std::string n, j;
    return SplitTag(t, &n, &j) && n == node;
  };
}

TagMatcher AnyAttemptOfJob(const std::string& node, int64_t job_id) {
  return [node, job_id](const std::string& t) {
    std::string n, j;
    return SplitTag(t, &n, &j) && n == node && j == std::to_string(job_id);
  };
}

std::optional<uid_t> RealUidOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) != 0) continue;
    char* end = nullptr;
    const unsigned long uid = std::strtoul(line.c_str() + 4, &end, 10);
    if (end == line.c_str() + 4) return std::nullopt;
    return static_cast<uid_t>(uid);
  }
  return std::nullopt;
}

std::vector<pid_t> FindTagged(const TagMatcher& matches, std::optional<uid_t> owner) {
  std::vector<pid_t> found;
  const std::string key = "KILN_RUN_TAG=";
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    std::ifstream environ_file(std::string("/proc/") + entry->d_name + "/environ",
                               std::ios::binary);
    if (!environ_file) continue;
    std::string var;
    while (std::getline(environ_file, var, '\0')) {
      if (var.compare(0, key.size(), key) == 0) {
        if (matches(var.substr(key.size())) &&
            (!owner || RealUidOf(static_cast<pid_t>(pid)) == owner)) {
          found.push_back(static_cast<pid_t>(pid));
        }
        break;
      }
    }
  }
  ::closedir(proc);
  return found;
}

int KillTagged(const TagMatcher& matches, int signal) {
  int count = 0;
  for (pid_t pid : FindTagged(matches)) count += ::kill(pid, signal) == 0 ? 1 : 0;
  return count;
}

}  // namespace kiln::agent
