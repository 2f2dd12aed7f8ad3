#include <catch2/catch.hpp>

#include "common/protocol/codec.h"
#include "worker/agent/log_shipper.h"

using kiln::agent::LogShipper;
using namespace kiln::protocol;

namespace {

struct Sent {
  std::vector<LogBatch> batches;
  LogShipper::Send sink() {
    return [this](Frames frames) {
      auto e = DecodeEnvelope(frames[0]);
      REQUIRE(e.ok());
      auto b = DecodeBody<LogBatch>(*e);
      REQUIRE(b.ok());
      batches.push_back(*b);
    };
  }
  std::vector<std::string> Take() {
    std::vector<std::string> lines;
    for (const auto& b : batches) lines.insert(lines.end(), b.lines.begin(), b.lines.end());
    batches.clear();
    return lines;
  }
};

}  // namespace

TEST_CASE("output lines are numbered per attempt, sent at once and kept until acknowledged") {
  Sent sent;
  LogShipper logs(sent.sink());
  logs.Add(7, 1, {"a", "b"}, 0);
  logs.Add(7, 1, {"c"}, 10);
  logs.Add(8, 1, {"x"}, 10);
  REQUIRE(sent.batches.size() == 3);
  CHECK(sent.batches[0].first_line == 0);
  CHECK(sent.batches[1].first_line == 2);
  CHECK(sent.batches[2].first_line == 0);  // each attempt numbers its own lines
  sent.batches.clear();
  CHECK(logs.HasUnacknowledged(7, 1));
  logs.OnAck({7, 1, 3, false}, 20);
  CHECK_FALSE(logs.HasUnacknowledged(7, 1));
  CHECK(logs.AnyUnacknowledged());  // job 8's line
  logs.ForgetAcknowledged({});
  logs.Pump(100000);  // only job 8's line waited long enough to be sent again
  REQUIRE(sent.batches.size() == 1);
  CHECK(sent.batches[0].job_id == 8);
  CHECK(sent.Take() == std::vector<std::string>{"x"});
}

TEST_CASE("a rewind, a reconnect or a silent scheduler makes the unacknowledged lines go again") {
  Sent sent;
  LogShipper logs(sent.sink());
  logs.Add(1, 2, {"l0", "l1", "l2", "l3"}, 0);
  sent.Take();
  logs.OnAck({1, 2, 1, false}, 5);  // l0 stored; l1.. still on their way
  logs.Pump(1000);
  CHECK(sent.batches.empty());  // not yet: an acknowledgement came recently
  logs.OnAck({1, 2, 2, true}, 10);  // the scheduler saw a gap after l1
  CHECK(sent.Take() == std::vector<std::string>{"l2", "l3"});
  logs.Restart(20);  // a new connection: everything unacknowledged again
  CHECK(sent.Take() == std::vector<std::string>{"l2", "l3"});
  logs.Pump(20 + LogShipper::kResendAfterMs);
  auto again = sent.batches;
  REQUIRE(again.size() == 1);
  CHECK(again[0].first_line == 2);
  CHECK(again[0].oldest_line == 2);
}

TEST_CASE("past its bound an attempt's oldest unacknowledged lines are dropped and counted") {
  Sent sent;
  LogShipper logs(sent.sink());
  const std::string mib(1 << 20, 'm');
  for (int i = 0; i < 10; ++i) logs.Add(3, 1, {mib}, i);
  CHECK(logs.dropped(3, 1) == 2);  // 8 MiB kept
  sent.Take();
  logs.Restart(100);
  REQUIRE(!sent.batches.empty());
  CHECK(sent.batches.front().first_line == 2);
  CHECK(sent.batches.front().oldest_line == 2);  // so the scheduler records 2 lines as lost
}
