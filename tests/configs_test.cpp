#include <catch2/catch.hpp>
#include <filesystem>

#include "common/file_util.h"
#include "common/job_array.h"
#include "common/job_spec.h"

TEST_CASE("every example job spec in configs/jobs validates") {
  int checked = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(KILN_SOURCE_DIR) + "/configs/jobs")) {
    if (entry.path().extension() != ".json") continue;
    INFO(entry.path().string());
    auto text = kiln::ReadFile(entry.path().string());
    REQUIRE(text.ok());
    // An array's spec (configs/jobs/array-*.json) is checked as its task 0 would run it.
    auto parsed =
        text->find("${array_index}") == std::string::npos
            ? kiln::ParseJobSpecText(*text)
            : kiln::ParseJobSpec(kiln::SubstituteArrayIndex(nlohmann::json::parse(*text), 0));
    for (const auto& e : parsed.errors) UNSCOPED_INFO(e.ToString());
    CHECK(parsed.ok());
    ++checked;
  }
  CHECK(checked >= 2);
}
