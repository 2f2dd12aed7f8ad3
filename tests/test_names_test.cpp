// CTest splits a test name at ';' into two names that match no Catch test, and both "pass" in
// no time without running anything. This happened twice; no TEST_CASE name may hold a ';'. A name
// that starts with '-' is taken by Catch for a command-line option, and the test fails unrun.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

TEST_CASE("no test case name contains a semicolon, which CTest would split, or starts with a "
          "dash, which Catch would take for an option") {
  const std::filesystem::path root = std::filesystem::path(KILN_SOURCE_DIR) / "tests";
  const std::regex test_case(R"re(TEST_CASE\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+))re");
  int names = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".cpp" || entry.path().filename() == "test_names_test.cpp") {
      continue;
    }
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string source = text.str();
    for (std::sregex_iterator it(source.begin(), source.end(), test_case), end; it != end; ++it) {
      ++names;
      INFO(entry.path().string() << ": " << (*it)[1].str());
      CHECK((*it)[1].str().find(';') == std::string::npos);
      CHECK((*it)[1].str().rfind("\"-", 0) != 0);
    }
  }
  CHECK(names > 100);
}
