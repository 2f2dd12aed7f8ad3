#include <catch2/catch.hpp>

#include "common/quantities.h"

using namespace kiln;

TEST_CASE("durations") {
  CHECK(ParseDuration("90") == 90);
  CHECK(ParseDuration("45s") == 45);
  CHECK(ParseDuration("1h30m") == 5400);
  CHECK(ParseDuration("2d") == 172800);
  CHECK_FALSE(ParseDuration("30m1h"));
  CHECK_FALSE(ParseDuration("1h30"));
  CHECK_FALSE(ParseDuration("soon"));
  CHECK_FALSE(ParseDuration(""));
  CHECK(FormatDuration(5400) == "1h30m");
}

TEST_CASE("sizes") {
  CHECK(ParseSize("512") == 512);
  CHECK(ParseSize("4GiB") == (4ll << 30));
  CHECK(ParseSize("4G") == (4ll << 30));
  CHECK(ParseSize("1.5MB") == 1572864);
  CHECK_FALSE(ParseSize("4X"));
  CHECK_FALSE(ParseSize("GiB"));
}
