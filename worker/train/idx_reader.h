// Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not. Our own, because the
// LibTorch MNIST reader hard-codes the sample counts. Torch-free, so it is tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::train {

struct IdxArray {
  std::vector<int64_t> dims;   // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;   // unsigned bytes, row-major; the only element type MNIST uses
  int64_t Count() const { return dims.empty() ? 0 : dims[0]; }
  int64_t ItemSize() const;    // product of dims[1..]
};

// Reads `path` (through zlib, which also reads uncompressed files). Checks the magic number, that
// the element type is unsigned byte, and that the data length matches the dims.
Result<IdxArray> ReadIdxFile(const std::string& path);
// The whole file, through zlib (which reads uncompressed files too).
Result<std::string> ReadMaybeGzipFile(const std::string& path);
// Parses IDX bytes already in memory.
Result<IdxArray> ParseIdx(const std::string& bytes, const std::string& name);

}  // namespace kiln::train
