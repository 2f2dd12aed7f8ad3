// The rank -> agent failure file and which errors a retry cannot cure.
#include <catch2/catch.hpp>

#include <stdlib.h>

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
