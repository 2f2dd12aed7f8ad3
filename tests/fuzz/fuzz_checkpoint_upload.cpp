// libFuzzer entry point for kiln::fuzz::CheckpointUpload (built and run by scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::CheckpointUpload(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
