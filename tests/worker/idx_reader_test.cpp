#include <catch2/catch.hpp>

#include <unistd.h>
#include <zlib.h>

#include "worker/train/idx_reader.h"

using kiln::train::ParseIdx;
using kiln::train::ReadIdxFile;

namespace {

std::string Header(uint8_t type, std::vector<uint32_t> dims) {
  std::string h = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>((d >> shift) & 255));
  }
  return h;
}

}  // namespace

TEST_CASE("an IDX image file parses into dims and bytes") {
  std::string bytes = Header(0x08, {2, 2, 3}) + std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c", 12);
  auto array = ParseIdx(bytes, "test");
  REQUIRE(array.ok());
  CHECK(array->dims == std::vector<int64_t>{2, 2, 3});
  CHECK(array->Count() == 2);
  CHECK(array->ItemSize() == 6);
  CHECK(array->data[11] == 12);
}

TEST_CASE("IDX files with a bad magic, type or length are refused") {
  CHECK(ParseIdx("\x01\x00\x08\x01", "t").status().message().find("magic") != std::string::npos);
  CHECK(ParseIdx(Header(0x0D, {1}) + "abcd", "t").status().message().find("element type") !=
        std::string::npos);
  CHECK(ParseIdx(Header(0x08, {4}) + "abc", "t").status().message().find("promise 4") !=
        std::string::npos);
  CHECK_FALSE(ParseIdx(Header(0x08, {4}).substr(0, 6), "t").ok());
}

TEST_CASE("gzip-compressed IDX files are read through zlib") {
  char path[] = "/tmp/kiln-idx-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::string bytes = Header(0x08, {3}) + "xyz";
  gzFile f = gzopen(path, "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  auto array = ReadIdxFile(path);
  REQUIRE(array.ok());
  CHECK(array->Count() == 3);
  CHECK(array->data[2] == 'z');
  ::unlink(path);
  CHECK(ReadIdxFile("/nonexistent/file.gz").status().code() == kiln::StatusCode::kNotFound);
}

TEST_CASE("the installed Fashion-MNIST files have the expected shapes") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (::access((dir + "/t10k-labels-idx1-ubyte.gz").c_str(), R_OK) != 0) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto images = ReadIdxFile(dir + "/t10k-images-idx3-ubyte.gz");
  auto labels = ReadIdxFile(dir + "/t10k-labels-idx1-ubyte.gz");
  REQUIRE(images.ok());
  REQUIRE(labels.ok());
  CHECK(images->dims == std::vector<int64_t>{10000, 28, 28});
  CHECK(labels->Count() == 10000);
  for (uint8_t l : labels->data) REQUIRE(l < 10);
}
