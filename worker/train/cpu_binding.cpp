#include "worker/train/cpu_binding.h"

#include <sched.h>

#include <cstdlib>
#include <sstream>

namespace kiln::train {

std::vector<int> RankCpuIds(const std::string& node_ids, int cpus_per_rank, int local_rank) {
  std::vector<int> all;
  std::stringstream in(node_ids);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long id = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || id < 0 || id >= CPU_SETSIZE) return {};
    all.push_back(static_cast<int>(id));
  }
  if (cpus_per_rank <= 0 || local_rank < 0) return {};
  const size_t begin = static_cast<size_t>(local_rank) * static_cast<size_t>(cpus_per_rank);
  if (begin + static_cast<size_t>(cpus_per_rank) > all.size()) return {};
  return std::vector<int>(all.begin() + static_cast<long>(begin),
                          all.begin() + static_cast<long>(begin + cpus_per_rank));
}

std::string BindRankCpus() {
  const char* ids = std::getenv("KILN_CPU_IDS");
  const char* per_rank = std::getenv("KILN_CPUS_PER_RANK");
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (ids == nullptr || per_rank == nullptr || local == nullptr) return "";
  const std::vector<int> mine = RankCpuIds(ids, std::atoi(per_rank), std::atoi(local));
  if (mine.empty()) return "";
  cpu_set_t set;
  CPU_ZERO(&set);
  std::string bound;
  for (int c : mine) {
    CPU_SET(c, &set);
    bound += (bound.empty() ? "" : ",") + std::to_string(c);
  }
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return "";
  return bound;
}

}  // namespace kiln::train
