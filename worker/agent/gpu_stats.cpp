#include "worker/agent/gpu_stats.h"

#include <dlfcn.h>

namespace kiln::agent {

// NVML's C API, the few calls used (nvml.h, stable since CUDA 5): handles are opaque pointers,
// results 0 on success.
struct GpuStats::Nvml {
  struct Utilization {
    unsigned int gpu;
    unsigned int memory;
  };
  struct Memory {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
  };
  using Device = void*;
  void* lib = nullptr;
  int (*init)() = nullptr;
  int (*shutdown)() = nullptr;
  int (*count)(unsigned int*) = nullptr;
  int (*handle)(unsigned int, Device*) = nullptr;
  int (*utilization)(Device, Utilization*) = nullptr;
  int (*memory)(Device, Memory*) = nullptr;
};

std::unique_ptr<GpuStats> GpuStats::Open() {
  auto stats = std::unique_ptr<GpuStats>(new GpuStats());
  void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) return stats;
  auto nvml = std::make_unique<Nvml>();
  nvml->lib = lib;
  nvml->init = reinterpret_cast<int (*)()>(::dlsym(lib, "nvmlInit_v2"));
  nvml->shutdown = reinterpret_cast<int (*)()>(::dlsym(lib, "nvmlShutdown"));
  nvml->count = reinterpret_cast<int (*)(unsigned int*)>(::dlsym(lib, "nvmlDeviceGetCount_v2"));
  nvml->handle = reinterpret_cast<int (*)(unsigned int, Nvml::Device*)>(
      ::dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
  nvml->utilization = reinterpret_cast<int (*)(Nvml::Device, Nvml::Utilization*)>(
      ::dlsym(lib, "nvmlDeviceGetUtilizationRates"));
  nvml->memory = reinterpret_cast<int (*)(Nvml::Device, Nvml::Memory*)>(
      ::dlsym(lib, "nvmlDeviceGetMemoryInfo"));
  if (!nvml->init || !nvml->shutdown || !nvml->count || !nvml->handle || !nvml->utilization ||
      !nvml->memory || nvml->init() != 0) {
    ::dlclose(lib);
    return stats;
  }
  stats->nvml_ = std::move(nvml);
  return stats;
}

GpuStats::~GpuStats() {
  if (!nvml_) return;
  nvml_->shutdown();
  ::dlclose(nvml_->lib);
}

std::vector<GpuStat> GpuStats::Read() const {
  std::vector<GpuStat> out;
  if (!nvml_) return out;
  unsigned int count = 0;
  if (nvml_->count(&count) != 0) return out;
  for (unsigned int i = 0; i < count && i < 64; ++i) {
    Nvml::Device device = nullptr;
    Nvml::Utilization use{};
    Nvml::Memory memory{};
    if (nvml_->handle(i, &device) != 0) continue;
    GpuStat s;
    s.index = static_cast<int>(i);
    if (nvml_->utilization(device, &use) == 0) s.utilization = use.gpu / 100.0;
    if (nvml_->memory(device, &memory) == 0) {
      s.memory_used_bytes = static_cast<int64_t>(memory.used);
      s.memory_total_bytes = static_cast<int64_t>(memory.total);
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace kiln::agent
