// Small file helpers with Status errors. WriteFileAtomic is how kiln writes anything a crash must
// not leave half-written: write a temp file beside the target, fsync it, rename, fsync the folder.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kiln {

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644);
Result<std::string> ReadFile(const std::string& path);
// mkdir -p.
Status MakeDirs(const std::string& path);
// Hex SHA-256 of data.
std::string Sha256Hex(const std::string& data);
// Hex SHA-256 of a file, read in 1 MiB blocks (bounded memory).
Result<std::string> Sha256OfFile(const std::string& path);
// Up to `length` bytes at `offset` (fewer at the end of the file).
Result<std::string> ReadFileRange(const std::string& path, int64_t offset, int64_t length);

}  // namespace kiln
