// Commands kiln prints for a person to paste: every word survives bash unchanged.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "common/shell_quote.h"
#include "common/transport/curve.h"

using namespace kiln;

namespace {
// What bash makes of `command`'s words: printf '%s\n' each one, through a real bash.
std::string WordsThroughBash(const std::string& command) {
  const std::string script = "set -- " + command + "; printf '%s\\n' \"$@\"";
  FILE* p = ::popen(("bash -c " + ShellQuote(script)).c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  return out;
}
}  // namespace

TEST_CASE("plain words stay as they are, the rest is single-quoted") {
  CHECK(ShellQuote("tcp://127.0.0.1:7070") == "tcp://127.0.0.1:7070");
  CHECK(ShellQuote("node-2") == "node-2");
  CHECK(ShellQuote("") == "''");
  CHECK(ShellQuote("a b") == "'a b'");
  CHECK(ShellQuote("it's") == "'it'\\''s'");
  CHECK(ShellCommand({"kiln", "login", "--server-key", "Ysy<#h0=&z"}) ==
        "kiln login --server-key 'Ysy<#h0=&z'");
}

TEST_CASE("every Z85 key and awkward word reaches bash as one unchanged word") {
  std::vector<std::string> words = {"it's", "$HOME", "`id`", "a\\b", "!x", "*", "~", "=x",
                                    "#c", "{a,b}", "x;y", "\"q\""};
  for (int i = 0; i < 50; ++i) words.push_back(transport::NewCurveKeyPair()->public_key);
  std::string expected;
  for (const auto& w : words) expected += w + "\n";
  CHECK(WordsThroughBash(ShellCommand(words)) == expected);
}
