// Which CPUs one rank runs on. The agent exports the attempt's CPU ids on this node
// (KILN_CPU_IDS, cpus_per_rank ids per local rank, in rank order) when it pinned the attempt;
// each rank binds itself to its own slice (sched_setaffinity) before it starts any thread, so
// every thread it starts (LibTorch's, OpenMP's, MPI's) inherits it. Pure apart from BindRankCpus.
#pragma once

#include <string>
#include <vector>

namespace kiln::train {

// The ids of local rank `local_rank` from the comma-separated `node_ids`: the slice
// [local_rank*cpus_per_rank, (local_rank+1)*cpus_per_rank). Empty when malformed or out of range.
std::vector<int> RankCpuIds(const std::string& node_ids, int cpus_per_rank, int local_rank);

// Reads KILN_CPU_IDS, KILN_CPUS_PER_RANK and OMPI_COMM_WORLD_LOCAL_RANK and binds this process to
// its slice. Returns the ids bound, as "2,3" ("" when the attempt is not pinned).
std::string BindRankCpus();

}  // namespace kiln::train
