// Anyone who knows the server key can send requests with made-up tokens: each is refused, and
// the scheduler's log gets one warning a minute about them, with a count, not one per request.
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <sstream>

#include "tests/scheduler/service_harness.h"

using kiln::testing::ServiceHarness;
using namespace kiln::protocol;

namespace {

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("requests with unknown tokens are refused and warned about once a minute") {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  {
    ServiceHarness h;
    const std::string forged = "kiln_" + std::string(64, 'a');
    for (int i = 0; i < 200; ++i) {
      auto reply = h.Ask(forged, WhoAmIRequest{});
      REQUIRE(reply.envelope.type == "error");
      REQUIRE(reply.body()["code"] == "UNAUTHENTICATED");
    }
    CHECK(Count(log.str(), "with an unknown token") == 1);
    h.clock().Advance(61000);
    (void)h.Ask(forged, WhoAmIRequest{});
    CHECK(Count(log.str(), "with an unknown token") == 2);
    CHECK(log.str().find("(and 199 more since the last such warning)") != std::string::npos);
  }
  spdlog::set_default_logger(previous);
}
