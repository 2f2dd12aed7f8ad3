// Enforces `resources.memory_per_rank` where no delegated cgroup does it: the agent samples each
// rank's resident memory (4 times a second, like Slurm's jobacct_gather with OverMemoryKill) and
// kills the attempt when a rank is over its limit. The verdict is pure; RankMemorySampler reads
// /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"

namespace kiln::agent {

struct RankMemory {
  int rank = 0;
  int64_t rss_bytes = 0;
};

// "OutOfMemory: rank 1 on node w1 used 4.3 GiB, over memory_per_rank 4.0 GiB" for the rank most
// over the limit, or nullopt when every rank is within it (or there is no limit).
std::optional<std::string> OverMemory(const std::vector<RankMemory>& ranks, int64_t limit_bytes,
                                      const std::string& node);

// The resident memory of each rank process of one attempt on this node: processes named
// `process_name` carrying the attempt's run tag, their rank read once from OMPI_COMM_WORLD_RANK.
// The process list is refreshed every 2 s; the sizes on every call (/proc/PID/statm).
class RankMemorySampler {
 public:
  // `owner`: only processes of this uid count (the job's account; another user's process may
  // carry the tag to have this attempt killed).
  RankMemorySampler(std::string run_tag, std::string process_name,
                    std::optional<uid_t> owner = std::nullopt);
  std::vector<RankMemory> Sample(Millis now);

 private:
  std::string run_tag_;
  std::string process_name_;
  std::optional<uid_t> owner_;
  std::map<pid_t, int> ranks_;  // pid -> rank
  Millis refreshed_at_ = -1'000'000;
};

}  // namespace kiln::agent
