#include <catch2/catch.hpp>

#include "worker/train/csv_table.h"

using kiln::train::ParseCsvTable;

TEST_CASE("a CSV table reads the label and, by default, every other column as features") {
  auto t = ParseCsvTable("a,label,b\n1,0,2\n3,1,4\n\n", "t.csv", "label", {});
  REQUIRE(t.ok());
  CHECK(t->rows == 2);
  CHECK(t->feature_names == std::vector<std::string>{"a", "b"});
  CHECK(t->features == std::vector<float>{1, 2, 3, 4});
  CHECK(t->labels == std::vector<double>{0, 1});
}

TEST_CASE("named feature columns are taken in the order given") {
  auto t = ParseCsvTable("a,label,b\n1,0,2\n", "t.csv", "label", {"b", "a"});
  REQUIRE(t.ok());
  CHECK(t->features == std::vector<float>{2, 1});
}

TEST_CASE("CSV errors name the file, line and column") {
  CHECK(ParseCsvTable("a,b\n1,2\n", "t.csv", "y", {}).status().message() ==
        "t.csv: no column \"y\" in the header");
  CHECK(ParseCsvTable("a,y\n1,2\n3\n", "t.csv", "y", {}).status().message() ==
        "t.csv line 3: 1 values, the header has 2");
  CHECK(ParseCsvTable("a,y\nx,2\n", "t.csv", "y", {}).status().message() ==
        "t.csv line 2, column \"a\": not a number");
  CHECK_FALSE(ParseCsvTable("a,y\n", "t.csv", "y", {}).ok());
}
