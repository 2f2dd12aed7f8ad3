// Replays every input kept in tests/fuzz/corpus/ (seeds, and crashes found by scripts/fuzz.sh
// once fixed) through the functions the fuzzers exercise: none may throw or crash.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/fuzz/fuzz_targets.h"

namespace {
std::string Slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST_CASE("fuzz corpus: every kept input is handled without a crash") {
  const std::filesystem::path root = std::filesystem::path(KILN_SOURCE_DIR) / "tests/fuzz/corpus";
  int inputs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root / "envelope")) {
    CHECK_NOTHROW(kiln::fuzz::Envelope(Slurp(entry.path())));
    ++inputs;
  }
  for (const auto& entry : std::filesystem::directory_iterator(root / "job_spec")) {
    CHECK_NOTHROW(kiln::fuzz::JobSpec(Slurp(entry.path())));
    ++inputs;
  }
  for (const auto& entry : std::filesystem::directory_iterator(root / "checkpoint_upload")) {
    CHECK_NOTHROW(kiln::fuzz::CheckpointUpload(Slurp(entry.path())));
    ++inputs;
  }
  CHECK(inputs >= 10);
}
