#include <catch2/catch.hpp>

#include "common/status.h"

using kiln::Result;
using kiln::Status;

TEST_CASE("Status carries its code and message") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status bad = Status::InvalidArgument("resources.ranks: must be >= 1");
  CHECK_FALSE(bad.ok());
  CHECK(bad.ToString() == "INVALID_ARGUMENT: resources.ranks: must be >= 1");
}

TEST_CASE("Result holds either a value or an error") {
  Result<int> value(42);
  REQUIRE(value.ok());
  CHECK(*value == 42);
  Result<int> error(Status::NotFound("no job with id 7"));
  CHECK_FALSE(error.ok());
  CHECK(error.status().message() == "no job with id 7");
}

TEST_CASE("Result built from an OK status is an internal error, not a value") {
  Result<int> r{Status::Ok()};
  CHECK_FALSE(r.ok());
  CHECK(r.status().code() == kiln::StatusCode::kInternal);
}
