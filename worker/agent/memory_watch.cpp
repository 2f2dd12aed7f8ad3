#include "worker/agent/memory_watch.h"

#include <unistd.h>

#include <fstream>
#include <iterator>

#include "common/quantities.h"
#include "worker/agent/process_group.h"

namespace kiln::agent {

std::optional<std::string> OverMemory(const std::vector<RankMemory>& ranks, int64_t limit_bytes,
                                      const std::string& node) {
  if (limit_bytes <= 0) return std::nullopt;
  const RankMemory* worst = nullptr;
  for (const auto& r : ranks) {
    if (r.rss_bytes > limit_bytes && (worst == nullptr || r.rss_bytes > worst->rss_bytes)) {
      worst = &r;
    }
  }
  if (worst == nullptr) return std::nullopt;
  return "OutOfMemory: rank " + std::to_string(worst->rank) + " on node " + node + " used " +
         FormatSize(worst->rss_bytes) + ", over memory_per_rank " + FormatSize(limit_bytes);
}

RankMemorySampler::RankMemorySampler(std::string run_tag, std::string process_name,
                                     std::optional<uid_t> owner)
    : run_tag_(std::move(run_tag)), process_name_(std::move(process_name)), owner_(owner) {}

namespace {

std::string ReadProc(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::optional<int> RankOf(pid_t pid) {
  const std::string environ = ReadProc(pid, "environ");
  const std::string key = "OMPI_COMM_WORLD_RANK=";
  size_t at = 0;
  while (at < environ.size()) {
    const size_t end = environ.find('\0', at);
    const std::string var = environ.substr(at, end == std::string::npos ? end : end - at);
    if (var.compare(0, key.size(), key) == 0) {
      try {
        return std::stoi(var.substr(key.size()));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return std::nullopt;
}

}  // namespace

std::vector<RankMemory> RankMemorySampler::Sample(Millis now) {
  if (now - refreshed_at_ >= 2000) {
    refreshed_at_ = now;
    std::map<pid_t, int> found;
    for (pid_t pid : FindTagged(ExactTag(run_tag_), owner_)) {
      std::string comm = ReadProc(pid, "comm");
      if (!comm.empty() && comm.back() == '\n') comm.pop_back();
      if (comm != process_name_.substr(0, 15)) continue;
      auto known = ranks_.find(pid);
      if (known != ranks_.end()) {
        found[pid] = known->second;
      } else if (auto rank = RankOf(pid)) {
        found[pid] = *rank;
      }
    }
    ranks_ = std::move(found);
  }
  static const int64_t kPage = ::sysconf(_SC_PAGESIZE);
  std::vector<RankMemory> out;
  for (const auto& [pid, rank] : ranks_) {
    const std::string statm = ReadProc(pid, "statm");
    long long size = 0;
    long long resident = 0;
    if (std::sscanf(statm.c_str(), "%lld %lld", &size, &resident) != 2) continue;
    out.push_back({rank, static_cast<int64_t>(resident) * kPage});
  }
  return out;
}

}  // namespace kiln::agent
