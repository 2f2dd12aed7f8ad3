// The rank -> agent failure file and which errors a retry cannot cure.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/rank_failure.h"

using namespace kiln;

TEST_CASE("missing, unreadable or invalid inputs are permanent failures, others may pass") {
  CHECK(IsPermanentFailure(StatusCode::kNotFound));
  CHECK(IsPermanentFailure(StatusCode::kPermissionDenied));
  CHECK(IsPermanentFailure(StatusCode::kInvalidArgument));
  CHECK_FALSE(IsPermanentFailure(StatusCode::kInternal));
  CHECK_FALSE(IsPermanentFailure(StatusCode::kIoError));
  CHECK_FALSE(IsPermanentFailure(StatusCode::kUnavailable));
}

TEST_CASE("opening a missing file is NotFound, naming the path and the cause") {
  auto missing = ReadFile("/nonexistent-kiln/x.csv");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(missing.status().message() ==
        "cannot open /nonexistent-kiln/x.csv: No such file or directory");
}

TEST_CASE("the agent reads the lowest failed rank's first error line") {
  char pattern[] = "/tmp/kiln-rankfail-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  CHECK_FALSE(ReadFirstRankFailure(dir).has_value());
  REQUIRE(WriteRankFailure(dir, {3, "cannot open /d/x: No such file or directory", true}).ok());
  REQUIRE(WriteRankFailure(dir, {1, "LibTorch: out of memory\nbacktrace...", false}).ok());
  REQUIRE(WriteFileAtomic(RankFailureDir(dir) + "/rank-0.json", "not json").ok());
  auto first = ReadFirstRankFailure(dir);
  REQUIRE(first.has_value());
  CHECK(first->rank == 1);
  CHECK(first->error == "LibTorch: out of memory");
  CHECK_FALSE(first->permanent);
  CHECK(FirstErrorLine(std::string(600, 'x')).size() == 500);
}

TEST_CASE("files a job's processes wrote cannot hurt the agent: wrong types, symlinks, FIFOs and "
          "huge files are ignored, and the agent clears them before a start") {
  char pattern[] = "/tmp/kiln-rankfail-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  REQUIRE(MakeDirs(RankFailureDir(dir)).ok());
  const std::string d = RankFailureDir(dir);
  REQUIRE(WriteFileAtomic(d + "/rank-0.json", R"({"rank": 0, "error": "x", "permanent": "yes"})")
              .ok());
  REQUIRE(::mkfifo((d + "/rank-1.json").c_str(), 0644) == 0);
  REQUIRE(::symlink("/dev/zero", (d + "/rank-2.json").c_str()) == 0);
  REQUIRE(WriteFileAtomic(d + "/rank-3.json", std::string(8192, ' ')).ok());
  REQUIRE(::symlink("/dev/zero", (dir + "/stopped.json").c_str()) == 0);
  auto first = ReadFirstRankFailure(dir);  // returns: no hang on the FIFO, no read of /dev/zero
  REQUIRE(first.has_value());
  CHECK(first->rank == 0);
  CHECK_FALSE(first->permanent);  // "yes" is not true
  CHECK_FALSE(ReadStopMarker(dir).has_value());

  ClearRankReports(dir);
  CHECK_FALSE(ReadFirstRankFailure(dir).has_value());
  REQUIRE(WriteStopMarker(dir, 275).ok());
  CHECK(ReadStopMarker(dir) == std::optional<int64_t>(275));
  ClearRankReports(dir);
  CHECK_FALSE(ReadStopMarker(dir).has_value());
}

TEST_CASE("an error line is made safe to show: control characters out, cut on a UTF-8 boundary") {
  CHECK(FirstErrorLine("a\rb\x1b[2Jc\nsecond") == "a b [2Jc");
  const std::string accents(300, 'x');
  std::string text = accents;
  for (int i = 0; i < 200; ++i) text += "\xc3\xa9";  // é, two bytes each
  const std::string line = FirstErrorLine(text);
  CHECK(line.size() <= 500);
  CHECK(line.substr(line.size() - 3) == "...");
  // The byte before "..." ends a character: é's second byte, never its first alone.
  CHECK(static_cast<unsigned char>(line[line.size() - 4]) == 0xa9);
  char pattern[] = "/tmp/kiln-rankfail-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  REQUIRE(WriteRankFailure(dir, {0, "cannot open /d/caf\xe9.csv", true}).ok());  // Latin-1
  REQUIRE(ReadFirstRankFailure(dir).has_value());
}
