#include "worker/train/idx_reader.h"

#include <zlib.h>

#include "common/file_util.h"

namespace kiln::train {

namespace {

constexpr uint8_t kUnsignedByte = 0x08;
constexpr int kMaxDims = 4;

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

int64_t IdxArray::ItemSize() const {
  int64_t size = 1;
  for (size_t i = 1; i < dims.size(); ++i) size *= dims[i];
  return size;
}

Result<IdxArray> ParseIdx(const std::string& bytes, const std::string& name) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || p[0] != 0 || p[1] != 0) {
    return Status::InvalidArgument(name + ": not an IDX file (bad magic number)");
  }
  if (p[2] != kUnsignedByte) {
    return Status::InvalidArgument(name + ": IDX element type " + std::to_string(p[2]) +
                                   " is not supported (only unsigned byte, 8)");
  }
  const int ndims = p[3];
  if (ndims < 1 || ndims > kMaxDims) {
    return Status::InvalidArgument(name + ": IDX with " + std::to_string(ndims) + " dimensions");
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() < header) return Status::InvalidArgument(name + ": truncated IDX header");
  IdxArray array;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    uint32_t d = BigEndian32(p + 4 + 4 * i);
    array.dims.push_back(d);
    total *= d;
    if (total > (uint64_t{1} << 34)) return Status::InvalidArgument(name + ": IDX too large");
  }
  if (bytes.size() - header != total) {
    return Status::InvalidArgument(name + ": IDX dims promise " + std::to_string(total) +
                                   " bytes of data, file has " +
                                   std::to_string(bytes.size() - header));
  }
  array.data.assign(p + header, p + bytes.size());
  return array;
}

Result<std::string> ReadMaybeGzipFile(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return OpenFailure("cannot open " + path);
  std::string bytes;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(file, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<size_t>(n));
  int error = 0;
  const char* message = gzerror(file, &error);
  std::string error_text = (n < 0 && message) ? message : "";
  gzclose(file);
  if (n < 0) return Status::IoError("cannot read " + path + ": " + error_text);
  return bytes;
}

Result<IdxArray> ReadIdxFile(const std::string& path) {
  auto bytes = ReadMaybeGzipFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseIdx(*bytes, path);
}

}  // namespace kiln::train
