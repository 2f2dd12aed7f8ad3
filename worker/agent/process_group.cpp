#include "worker/agent/process_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::agent {

Result<ProcessGroup> ProcessGroup::Start(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& env, const std::string& cwd,
    const std::string& tag) {
  if (argv.empty()) return Status::InvalidArgument("empty command");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::IoError(std::string("pipe: ") + std::strerror(errno));
  }
  // Everything the child needs is prepared before fork: after fork only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
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
    ::setsid();  // new session and process group, led by this child
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) _exit(126);
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
  char buf[65536];
  while (true) {
    ssize_t n = ::read(output_fd_, buf, sizeof buf);
    if (n > 0) {
      partial_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) *eof = true;
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(partial_.substr(start, nl - start));
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

std::vector<pid_t> FindTagged(const std::string& tag, bool prefix) {
  std::vector<pid_t> found;
  const std::string needle = "KILN_RUN_TAG=" + tag;
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
      if (var == needle || (prefix && var.compare(0, needle.size(), needle) == 0)) {
        found.push_back(static_cast<pid_t>(pid));
        break;
      }
    }
  }
  ::closedir(proc);
  return found;
}

int KillTagged(const std::string& tag, int signal, bool prefix) {
  int count = 0;
  for (pid_t pid : FindTagged(tag, prefix)) count += ::kill(pid, signal) == 0 ? 1 : 0;
  return count;
}

}  // namespace kiln::agent
