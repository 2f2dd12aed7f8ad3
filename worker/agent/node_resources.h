// What this node offers: memory and GPUs, found without linking CUDA or LibTorch.
#pragma once

#include <cstdint>

namespace kiln::agent {

int64_t DetectMemoryBytes();  // MemTotal from /proc/meminfo; 0 if unknown
// Devices reported by the CUDA driver (libcuda.so.1, loaded at run time); 0 without a driver.
int64_t DetectCudaGpus();
int64_t DetectCpuCount();

}  // namespace kiln::agent
