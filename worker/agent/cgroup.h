// cgroup v2 enforcement of an attempt's memory, for nodes whose admin delegates a cgroup to the
// agent (systemd: `Delegate=yes` on kiln-worker.service; docs/operations.md). Without one, the
// agent's watchdog (memory_watch.h) enforces memory_per_rank alone; with one, both do: the
// watchdog names the rank, and the kernel holds the line between two samples.
//
// The agent must be root (main.cpp refuses --cgroup otherwise): it runs jobs as other accounts,
// so the folders it creates, owned by root, are out of their reach; an agent that runs jobs as
// itself would hand them the means to lift their own limits. Layout under the delegated ROOT:
//   ROOT/agent                     the agent itself: cgroup v2 lets only leaves hold processes
//                                  once controllers are enabled for children
//   ROOT/job-ID-attempt-N          one attempt on this node: memory.max = its ranks here ×
//                                  memory_per_rank, memory.swap.max = 0 (the limit is not dodged
//                                  through swap), memory.oom.group = 1 (an OOM kill takes the
//                                  whole attempt, not one rank that leaves the gang hanging)
// The attempt's first process (mpirun, or a member's MPI daemon) joins its cgroup before exec, so
// every process it starts is inside, even one that leaves its session: the attempt is killed
// with cgroup.kill, which reaches them all.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::agent {

class DelegatedCgroup {
 public:
  // Takes over the delegated cgroup at `root` ("self": the agent's own cgroup, read from
  // /proc/self/cgroup under /sys/fs/cgroup): moves this process into ROOT/agent and enables the
  // memory and pids controllers for ROOT's children. `require_cgroup2`: refuse a folder that is
  // not on a cgroup2 file system (false only in tests, which use a plain folder).
  static Result<DelegatedCgroup> Open(const std::string& root, bool require_cgroup2 = true);

  const std::string& root() const { return root_; }
  // ROOT/NAME for one attempt, created afresh, with memory.max (0: no limit).
  Result<std::string> CreateAttempt(const std::string& name, int64_t memory_max_bytes) const;
  // An attempt ended: kills what is left in its cgroup and removes it, now or, while its
  // processes are still dying, at a later SweepLeftovers.
  void Retire(const std::string& attempt_cgroup) const;
  // Removes retired cgroups that have emptied, and any ROOT/job-* folder not in `live` (the
  // cgroups of attempts that run now): those of an agent that ran here before.
  void SweepLeftovers(const std::set<std::string>& live) const;

 private:
  explicit DelegatedCgroup(std::string root) : root_(std::move(root)) {}
  std::string root_;
  mutable std::vector<std::string> retired_;  // the agent's thread only
};

// The cgroup folder of this process from the text of /proc/self/cgroup ("0::/system.slice/x"),
// under `mount`; an error when it lists no cgroup v2 entry.
Result<std::string> OwnCgroupFolder(const std::string& proc_self_cgroup,
                                    const std::string& mount = "/sys/fs/cgroup");
// The processes the kernel killed because this cgroup reached its memory.max, from memory.events
// text ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n..."): oom_kill when "oom" is not 0.
int64_t LimitOomKillsIn(const std::string& memory_events);
// "OutOfMemory: the 2 ranks of job 7 on node w1 reached their cgroup's memory.max of 8.0 GiB
// (memory_per_rank 4.0 GiB each); the kernel killed the attempt".
std::string CgroupOomReason(int64_t ranks, int64_t memory_per_rank, int64_t job_id,
                            const std::string& node);

// LimitOomKillsIn of the attempt's cgroup (0 when unreadable).
int64_t OomKillsOf(const std::string& attempt_cgroup);
// SIGKILLs every process in the attempt's cgroup (cgroup.kill, or each of cgroup.procs where
// the kernel is older than 5.14), then removes the folder once it is empty; false while
// processes remain (call again later).
bool KillAndRemoveAttemptCgroup(const std::string& attempt_cgroup);

}  // namespace kiln::agent
