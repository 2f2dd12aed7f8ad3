#include "worker/train/gpu_binding.h"

#include <cstdlib>
#include <sstream>
#include <vector>

namespace kiln::train {

std::string RankGpuIds(const std::string& node_ids, int gpus_per_rank, int local_rank) {
  if (gpus_per_rank <= 0 || local_rank < 0) return "";
  std::vector<std::string> ids;
  std::stringstream in(node_ids);
  for (std::string id; std::getline(in, id, ',');) {
    if (!id.empty()) ids.push_back(id);
  }
  const size_t first = static_cast<size_t>(local_rank) * gpus_per_rank;
  if (first + gpus_per_rank > ids.size()) return "";
  std::string out;
  for (size_t i = first; i < first + gpus_per_rank; ++i) out += (out.empty() ? "" : ",") + ids[i];
  return out;
}

std::string BindRankGpus() {
  const char* ids = std::getenv("KILN_GPU_IDS");
  const char* per_rank = std::getenv("KILN_GPUS_PER_RANK");
  const char* local_rank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (ids == nullptr || per_rank == nullptr || local_rank == nullptr) return "";
  const std::string mine = RankGpuIds(ids, std::atoi(per_rank), std::atoi(local_rank));
  if (!mine.empty()) ::setenv("CUDA_VISIBLE_DEVICES", mine.c_str(), /*overwrite=*/1);
  return mine;
}

}  // namespace kiln::train
