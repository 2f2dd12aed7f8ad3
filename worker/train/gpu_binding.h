// Which GPUs one rank uses. The agent exports the node share's ids (KILN_GPU_IDS, gpus_per_rank
// ids per local rank, in rank order); each rank narrows CUDA_VISIBLE_DEVICES to its own before
// CUDA starts, so device 0 of every rank is its first GPU. Pure apart from BindRankGpus.
#pragma once

#include <string>

namespace kiln::train {

// The ids of local rank `local_rank` from the comma-separated `node_ids`: the slice
// [local_rank*gpus_per_rank, (local_rank+1)*gpus_per_rank). Empty when out of range.
std::string RankGpuIds(const std::string& node_ids, int gpus_per_rank, int local_rank);

// Reads KILN_GPU_IDS, KILN_GPUS_PER_RANK and OMPI_COMM_WORLD_LOCAL_RANK and sets
// CUDA_VISIBLE_DEVICES to this rank's ids. Returns them ("" when the job has no GPUs).
std::string BindRankGpus();

}  // namespace kiln::train
