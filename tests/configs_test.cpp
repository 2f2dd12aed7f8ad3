#include <catch2/catch.hpp>
#include <filesystem>

#include "common/file_util.h"
#include "common/job_array.h"
#include "common/job_spec.h"
#include "scheduler/core/sweep.h"

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

TEST_CASE("every example sweep in configs/sweeps is valid, and so is each trial's spec") {
  int checked = 0;
  const std::string dir = std::string(KILN_SOURCE_DIR) + "/configs/sweeps";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    INFO(entry.path().string());
    auto text = kiln::ReadFile(entry.path().string());
    REQUIRE(text.ok());
    nlohmann::json doc = nlohmann::json::parse(*text);
    if (doc["base"].is_string()) {  // as kiln sweep reads it: relative to the sweep's file
      auto base = kiln::ReadFile(dir + "/" + doc["base"].get<std::string>());
      REQUIRE(base.ok());
      doc["base"] = nlohmann::json::parse(*base);
    }
    kiln::core::SweepParseResult sweep = kiln::core::ParseSweepSpec(doc);
    for (const auto& e : sweep.errors) UNSCOPED_INFO(e);
    REQUIRE(sweep.ok());
    for (int64_t t = 0; t < sweep.spec.max_trials; ++t) {
      auto parsed = kiln::ParseJobSpec(
          kiln::core::ApplyParams(sweep.spec.base, kiln::core::TrialParams(sweep.spec, t)));
      for (const auto& e : parsed.errors) UNSCOPED_INFO("trial " << t << ": " << e.ToString());
      CHECK(parsed.ok());
    }
    ++checked;
  }
  CHECK(checked >= 2);
}
