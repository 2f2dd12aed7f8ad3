// GPU use for the agent's /metrics, read through NVML (libnvidia-ml.so.1, the NVIDIA driver's),
// loaded at run time like the CUDA probe (node_resources.cpp): a node without the driver has no
// GPUs to report and needs no NVIDIA library to run the agent.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace kiln::agent {

struct GpuStat {
  int index = 0;
  double utilization = 0;  // 0..1 over NVML's last sample period
  int64_t memory_used_bytes = 0;
  int64_t memory_total_bytes = 0;
};

class GpuStats {
 public:
  // Loads NVML and initialises it; without it (no driver), Read() returns nothing.
  static std::unique_ptr<GpuStats> Open();
  ~GpuStats();
  std::vector<GpuStat> Read() const;

 private:
  struct Nvml;
  std::unique_ptr<Nvml> nvml_;
};

}  // namespace kiln::agent
