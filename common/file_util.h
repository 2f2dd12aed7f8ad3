// Small file helpers with Status errors. WriteFileAtomic is how kiln writes anything a crash must
// not leave half-written: write a temp file beside the target, fsync it, rename, fsync the folder.
#pragma once

#include <string>

#include "common/status.h"

namespace kiln {

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644);
Result<std::string> ReadFile(const std::string& path);
// mkdir -p.
Status MakeDirs(const std::string& path);
// Hex SHA-256 of data.
std::string Sha256Hex(const std::string& data);

}  // namespace kiln
