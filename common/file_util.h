// Small file helpers with Status errors. WriteFileAtomic is how kiln writes anything a crash must
// not leave half-written: write a temp file beside the target, fsync it, rename, fsync the folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644);
// Fails NotFound (no such file), PermissionDenied (not readable) or IoError, naming the path.
Result<std::string> ReadFile(const std::string& path);
// The Status for an open that just failed with errno: NotFound for ENOENT/ENOTDIR,
// PermissionDenied for EACCES/EPERM, else IoError; the message is "<what>: <strerror>".
Status OpenFailure(const std::string& what);
// mkdir -p.
Status MakeDirs(const std::string& path);
// Deletes all but the `keep` newest files of `dir` whose names end in `extension`, ordering by
// name (checkpoint files carry zero-padded step numbers), and never a path listed in `in_use`.
void RemoveAllButNewest(const std::string& dir, const std::string& extension, int keep,
                        const std::vector<std::string>& in_use = {});

// Lower-case hex of raw bytes.
std::string HexOf(const unsigned char* bytes, size_t size);
// `text` without leading and trailing whitespace (for one-line files: keys, tokens).
std::string TrimWhitespace(const std::string& text);
// Equal, taking the same time wherever the first difference is (for secrets).
bool ConstantTimeEquals(const std::string& a, const std::string& b);

// Hex SHA-256 of data.
std::string Sha256Hex(const std::string& data);
// SHA-256 computed piece by piece.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(const char* data, size_t size);
  std::string FinishHex();  // once

 private:
  void* ctx_;
};

// Hex SHA-256 of a file, read in 1 MiB blocks (bounded memory).
Result<std::string> Sha256OfFile(const std::string& path);
// A file that someone else controls (a job's rank wrote it): read only when it is a regular file
// (no symlink, FIFO or device) of at most `max_bytes`; otherwise InvalidArgument.
Result<std::string> ReadSmallRegularFile(const std::string& path, size_t max_bytes);
// Up to `length` bytes at `offset` (fewer at the end of the file).
Result<std::string> ReadFileRange(const std::string& path, int64_t offset, int64_t length);

}  // namespace kiln
