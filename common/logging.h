// Process-wide logging set-up: spdlog to stderr with the component name in every line.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace kiln {

// `level` is one of trace, debug, info, warn, error; unknown values fall back to info.
// KILN_LOG_LEVEL in the environment overrides it.
void InitLogging(const std::string& component, const std::string& level = "info");

}  // namespace kiln
