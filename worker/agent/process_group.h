// A child process started in its own session and process group, with stdout and stderr joined
// into one pipe, so the whole tree it starts can be signalled at once and its output read.
// Every process of the tree also carries KILN_RUN_TAG=<tag> in its environment; KillTagged finds
// stragglers that left the group (e.g. a daemonized helper) by that tag.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/agent/run_as.h"

namespace kiln::agent {

struct ExitStatus {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
};

class ProcessGroup {
 public:
  // Starts argv[0] (searched in PATH) with `env` added to this process's environment, in `cwd`.
  // With `as`: the child takes the account's groups, gid and uid (then PR_SET_NO_NEW_PRIVS)
  // before it enters `cwd`, and its environment is CleanEnvironment(*as) plus `env`, none of
  // this process's. With `join_cgroup_fd` (an open cgroup.procs of a cgroup v2 folder), the
  // child moves itself into that cgroup before anything else, so all it starts is inside.
  static Result<ProcessGroup> Start(const std::vector<std::string>& argv,
                                    const std::vector<std::pair<std::string, std::string>>& env,
                                    const std::string& cwd, const std::string& tag,
                                    const RunAs* as = nullptr, int join_cgroup_fd = -1);
  ProcessGroup(ProcessGroup&& other) noexcept;
  ProcessGroup& operator=(ProcessGroup&& other) noexcept;
  ~ProcessGroup();

  pid_t pid() const { return pid_; }
  int output_fd() const { return output_fd_; }
  const std::string& tag() const { return tag_; }

  static constexpr size_t kMaxReadPerCall = 1 << 20;
  static constexpr size_t kMaxLineBytes = 16 << 10;

  // Reads what is available without blocking (at most kMaxReadPerCall bytes); returns complete
  // lines (a partial last line is kept until its newline or EOF; lines longer than kMaxLineBytes
  // are split). Sets *eof when the pipe is closed.
  std::vector<std::string> ReadLines(bool* eof);
  // Non-blocking reap of the leader; the status once it exited.
  std::optional<ExitStatus> TryReap();
  // Signals the whole process group.
  void SignalGroup(int signal);

 private:
  ProcessGroup() = default;
  pid_t pid_ = -1;
  int output_fd_ = -1;
  std::string tag_;
  std::string partial_;
  std::optional<ExitStatus> exit_;
};

// Run tags: "<node>-<job>-<attempt>". Node names may contain '-', so matchers parse from the right.
std::string RunTag(const std::string& node, int64_t job_id, int64_t attempt);
using TagMatcher = std::function<bool(const std::string& tag)>;
TagMatcher ExactTag(const std::string& tag);
TagMatcher AnyAttemptOfNode(const std::string& node);                // <node>-<n>-<n>
TagMatcher AnyAttemptOfJob(const std::string& node, int64_t job_id);  // <node>-<job>-<n>

// Processes whose KILN_RUN_TAG matches; with `owner`, only those whose real uid it is (another
// user's process may carry any tag it likes).
std::vector<pid_t> FindTagged(const TagMatcher& matches, std::optional<uid_t> owner = std::nullopt);
// The real uid of a process (the first field of Uid: in /proc/PID/status), or nullopt.
std::optional<uid_t> RealUidOf(pid_t pid);
// Sends `signal` to each process FindTagged returns; returns how many were signalled.
int KillTagged(const TagMatcher& matches, int signal);

}  // namespace kiln::agent
