#include "common/ids.h"

#include <cstdint>
#include <cstdio>
#include <random>

namespace kiln {

std::string NewRequestId() {
  std::random_device rd;
  char buf[33];
  for (int i = 0; i < 4; ++i) std::snprintf(buf + i * 8, 9, "%08x", static_cast<uint32_t>(rd()));
  return std::string(buf, 32);
}

}  // namespace kiln
