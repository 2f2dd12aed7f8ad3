// Identifiers made by clients: request ids that make retried requests idempotent.
#pragma once

#include <string>

namespace kiln {

// 128 random bits as 32 hex characters, from the OS entropy source.
std::string NewRequestId();

}  // namespace kiln
