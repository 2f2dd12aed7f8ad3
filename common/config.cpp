#include "common/config.h"

#include <cstdlib>

namespace kiln {

std::string ResolveSchedulerAddress(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv(kSchedulerEnvVar);
  if (env != nullptr && *env != '\0') return env;
  return kDefaultSchedulerAddress;
}

}  // namespace kiln
