#include "common/job_array.h"

#include <catch2/catch.hpp>

using kiln::ArraySpec;
using kiln::IndexSet;
using nlohmann::json;

namespace {
IndexSet Set(const std::string& text) {
  auto s = IndexSet::Parse(text);
  REQUIRE(s.ok());
  return *s;
}
std::string Error(const std::string& array) {
  auto s = kiln::ParseArraySpec(array);
  REQUIRE_FALSE(s.ok());
  return s.status().message();
}
}  // namespace

TEST_CASE("array indices parse, count and print canonically", "[array]") {
  CHECK(Set("0-999").Count() == 1000);
  CHECK(Set("0-999").ToString() == "0-999");
  CHECK(Set("0-999:4").Count() == 250);
  CHECK(Set("0-999:4").ToString() == "0-996:4");  // the last reachable index
  CHECK(Set("7").ToString() == "7");
  CHECK(Set("5-5:3").ToString() == "5");
  // Lists are sorted, merged and compressed.
  CHECK(Set("9,1,3,5,7").ToString() == "1-9:2");
  CHECK(Set("0-4,3-8").ToString() == "0-8");
  CHECK(Set("1,2,3,10,20,30").ToString() == "1-3,10-30:10");
  CHECK(Set("1,2,3,10,20,30").Count() == 6);
  CHECK(Set("0-99999").Count() == 100000);
}

TEST_CASE("bad array specs name what is wrong", "[array]") {
  CHECK_THAT(Error(""), Catch::Contains("array:") && Catch::Contains("FIRST-LAST"));
  CHECK_THAT(Error("5-3"), Catch::Contains("empty range"));
  CHECK_THAT(Error("0-9:0"), Catch::Contains("step must be"));
  CHECK_THAT(Error("0-9%0"), Catch::Contains("at once"));
  CHECK_THAT(Error("0-9%x"), Catch::Contains("at once"));
  CHECK_THAT(Error("a-9"), Catch::Contains("does not start with an index"));
  CHECK_THAT(Error("-1-5"), Catch::Contains("does not start with an index"));
  CHECK_THAT(Error("0-100000"), Catch::Contains("more than 100000 tasks"));
  CHECK_THAT(Error("0-99999999"), Catch::Contains("indices go up to"));
  CHECK_THAT(Error("0,,3"), Catch::Contains("does not start with an index"));
  std::string squares;  // 250 indices without three in arithmetic progression
  for (int i = 1; i <= 250; ++i) squares += (i > 1 ? "," : "") + std::to_string(i * i * 7 + i % 2);
  CHECK_THAT(Error(squares), Catch::Contains("ranges"));
  auto ok = kiln::ParseArraySpec("0-99%4");
  REQUIRE(ok.ok());
  CHECK(ok->max_running == 4);
  CHECK(ok->indices.Count() == 100);
}

TEST_CASE("taking and removing indices keeps the runs canonical", "[array]") {
  IndexSet s = Set("0-9:3");  // 0 3 6 9
  CHECK(s.TakeFirst() == 0);
  CHECK(s.ToString() == "3-9:3");
  CHECK(s.Remove(6));
  CHECK(s.ToString() == "3,9");
  CHECK_FALSE(s.Remove(6));
  CHECK_FALSE(s.Contains(6));
  CHECK(s.Contains(9));
  CHECK(s.TakeFirst() == 3);
  CHECK(s.TakeFirst() == 9);
  CHECK(s.empty());
  IndexSet big = Set("0-999");
  CHECK(big.Remove(40));
  CHECK(big.ToString() == "0-39,41-999");
  CHECK(big.Count() == 999);
  CHECK(big.Expand().size() == 999);
  CHECK(big.Expand()[40] == 41);
}

TEST_CASE("a task's spec has its index substituted outside resources", "[array]") {
  json spec = {{"name", "sweep-${array_index}"},
               {"data", {{"type", "csv"}, {"path", "/d/part-${array_index}.csv"}}},
               {"train", {{"seed", "${array_index}"}, {"epochs", 2}}},
               {"resources", {{"labels", {"${array_index}"}}}},
               {"model", {{"hidden", {"${array_index}", 8}}}}};
  json task = kiln::SubstituteArrayIndex(spec, 41);
  CHECK(task["name"] == "sweep-41");
  CHECK(task["data"]["path"] == "/d/part-41.csv");
  CHECK(task["train"]["seed"] == 41);  // the whole string: a number
  CHECK(task["train"]["epochs"] == 2);
  CHECK(task["resources"]["labels"][0] == "${array_index}");  // placement is the array's
  CHECK(task["model"]["hidden"][0] == 41);
  CHECK(kiln::SubstituteArrayIndex(json{{"name", "a${array_index}b${array_index}"}}, 3)["name"] ==
        "a3b3");
}

TEST_CASE("an array rolls up to FAILED, CANCELLED or COMPLETED", "[array]") {
  CHECK(std::string(kiln::ArrayFinalState({10, 0, 0})) == "COMPLETED");
  CHECK(std::string(kiln::ArrayFinalState({8, 1, 1})) == "FAILED");
  CHECK(std::string(kiln::ArrayFinalState({8, 0, 2})) == "CANCELLED");
  CHECK(kiln::DescribeTally({8, 1, 0}) == "8 completed, 1 failed");
}

TEST_CASE("job references name a job or an array's task", "[array]") {
  auto plain = kiln::ParseJobRef("12");
  REQUIRE(plain);
  CHECK(plain->id == 12);
  CHECK_FALSE(plain->index);
  auto task = kiln::ParseJobRef("12_40");
  REQUIRE(task);
  CHECK(task->id == 12);
  CHECK(task->index == 40);
  CHECK_FALSE(kiln::ParseJobRef("12_"));
  CHECK_FALSE(kiln::ParseJobRef("x"));
  CHECK_FALSE(kiln::ParseJobRef("-3"));
  CHECK(kiln::TaskName(12, 40) == "12_40");
}
