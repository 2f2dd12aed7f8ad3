#include "common/logging.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_sinks.h>

namespace kiln {

void InitLogging(const std::string& component, const std::string& level) {
  auto logger = spdlog::stderr_logger_mt(component);
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %^%l%$ %v");
  std::string chosen = level;
  if (const char* env = std::getenv("KILN_LOG_LEVEL")) chosen = env;
  auto parsed = spdlog::level::from_str(chosen);
  if (parsed == spdlog::level::off && chosen != "off") parsed = spdlog::level::info;
  spdlog::set_level(parsed);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace kiln
