// OutboundQueues: replies a connection has not taken wait in order, and a connection that leaves
// more than its budget unread is cut off, in both directions.
#include "scheduler/service/outbound_queues.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

using kiln::service::OutboundBudgets;
using kiln::service::OutboundQueues;
using kiln::service::SendOutcome;
using kiln::transport::Frames;

namespace {

// A fake ZeroMQ: each peer takes up to `room[peer]` messages; peers not in `room` are gone.
struct FakeSocket {
  std::map<std::string, int> room;
  std::map<std::string, std::vector<std::string>> delivered;
  SendOutcome operator()(const Frames& f) {
    auto it = room.find(f[0]);
    if (it == room.end()) return SendOutcome::kGone;
    if (it->second == 0) return SendOutcome::kFull;
    --it->second;
    delivered[f[0]].push_back(f[1]);
    return SendOutcome::kSent;
  }
};

Frames Message(const std::string& peer, const std::string& body) { return {peer, body}; }

// `per_peer` for every peer, trusted ones included; no total.
OutboundBudgets Budget(int64_t per_peer) {
  OutboundBudgets b;
  b.per_peer = per_peer;
  b.per_trusted_peer = per_peer;
  b.total = int64_t{1} << 40;
  return b;
}

}  // namespace

TEST_CASE("a peer with room gets its messages at once and nothing waits") {
  FakeSocket socket{{{"a", 10}}, {}};
  OutboundQueues queues(Budget(1 << 20));
  auto send = [&](const Frames& f) { return socket(f); };
  CHECK_FALSE(queues.Send(Message("a", "1"), send));
  CHECK_FALSE(queues.Send(Message("a", "2"), send));
  CHECK(socket.delivered["a"] == std::vector<std::string>{"1", "2"});
  CHECK_FALSE(queues.HasWaiting());
  CHECK(queues.waiting_bytes() == 0);
}

TEST_CASE("messages to a full peer wait, in order, and go when it has room again") {
  FakeSocket socket{{{"a", 1}, {"b", 5}}, {}};
  OutboundQueues queues(Budget(1 << 20));
  auto send = [&](const Frames& f) { return socket(f); };
  queues.Send(Message("a", "1"), send);
  queues.Send(Message("a", "2"), send);
  queues.Send(Message("b", "x"), send);  // another peer is not held up
  queues.Send(Message("a", "3"), send);
  CHECK(socket.delivered["a"] == std::vector<std::string>{"1"});
  CHECK(socket.delivered["b"] == std::vector<std::string>{"x"});
  CHECK(queues.WaitingBytesFor("a") == 2 * OutboundQueues::CostOf(Message("a", "2")));
  CHECK(queues.WaitingBytesFor("b") == 0);

  socket.room["a"] = 1;
  queues.Flush(send);
  CHECK(socket.delivered["a"] == std::vector<std::string>{"1", "2"});
  // A new message must not overtake the one still waiting.
  queues.Send(Message("a", "4"), send);
  socket.room["a"] = 10;
  queues.Flush(send);
  CHECK(socket.delivered["a"] == std::vector<std::string>{"1", "2", "3", "4"});
  CHECK_FALSE(queues.HasWaiting());
  CHECK(queues.waiting_bytes() == 0);
}

TEST_CASE("a peer that never reads is cut off past its budget, and then nothing reaches it") {
  FakeSocket socket{{{"greedy", 0}, {"honest", 100}}, {}};
  const std::string chunk(1000, 'c');
  const int64_t cost = OutboundQueues::CostOf(Message("greedy", chunk));
  OutboundQueues queues(Budget(3 * cost));
  auto send = [&](const Frames& f) { return socket(f); };
  CHECK_FALSE(queues.Send(Message("greedy", chunk), send));
  CHECK_FALSE(queues.Send(Message("greedy", chunk), send));
  CHECK_FALSE(queues.Send(Message("greedy", chunk), send));
  CHECK(queues.WaitingBytesFor("greedy") == 3 * cost);
  CHECK_FALSE(queues.IsCutOff("greedy"));
  CHECK(queues.Send(Message("greedy", chunk), send));  // the fourth passes the budget
  CHECK(queues.IsCutOff("greedy"));
  CHECK(queues.WaitingBytesFor("greedy") == 0);  // its queue is freed
  CHECK(queues.waiting_bytes() == 0);
  // Even with room again, nothing more goes to it, and it is not cut off twice.
  socket.room["greedy"] = 100;
  CHECK_FALSE(queues.Send(Message("greedy", chunk), send));
  queues.Flush(send);
  CHECK(socket.delivered["greedy"].empty());
  // Others are served as before.
  CHECK_FALSE(queues.Send(Message("honest", chunk), send));
  CHECK(socket.delivered["honest"].size() == 1);
  CHECK_FALSE(queues.IsCutOff("honest"));
}

TEST_CASE("many small messages count against the budget too") {
  FakeSocket socket{{{"a", 0}}, {}};
  OutboundQueues queues(Budget(10 * OutboundQueues::CostOf(Message("a", ""))));
  auto send = [&](const Frames& f) { return socket(f); };
  int sent_before_cut = 0;
  while (!queues.Send(Message("a", ""), send) && sent_before_cut < 1000) ++sent_before_cut;
  CHECK(sent_before_cut == 10);
  CHECK(queues.IsCutOff("a"));
}

TEST_CASE("waiting messages for a peer that disconnects are dropped") {
  FakeSocket socket{{{"a", 0}}, {}};
  OutboundQueues queues(Budget(1 << 20));
  auto send = [&](const Frames& f) { return socket(f); };
  queues.Send(Message("a", "1"), send);
  queues.Send(Message("a", "2"), send);
  CHECK(queues.HasWaiting());
  socket.room.erase("a");  // gone
  queues.Flush(send);
  CHECK_FALSE(queues.HasWaiting());
  CHECK(queues.waiting_bytes() == 0);
  CHECK_FALSE(queues.IsCutOff("a"));
  // Messages to a peer that is gone are dropped, not queued.
  CHECK_FALSE(queues.Send(Message("a", "3"), send));
  CHECK_FALSE(queues.HasWaiting());
}

TEST_CASE("only the most recent cut-off peers are remembered") {
  FakeSocket socket{{{"p0", 0}, {"p1", 0}, {"p2", 0}}, {}};
  OutboundBudgets budgets = Budget(OutboundQueues::CostOf(Message("p0", "x")));
  budgets.remembered_cut_offs = 2;
  OutboundQueues queues(budgets);
  auto send = [&](const Frames& f) { return socket(f); };
  for (const std::string peer : {"p0", "p1", "p2"}) {
    queues.Send(Message(peer, "x"), send);
    CHECK(queues.Send(Message(peer, "x"), send));
  }
  CHECK_FALSE(queues.IsCutOff("p0"));
  CHECK(queues.IsCutOff("p1"));
  CHECK(queues.IsCutOff("p2"));
}

TEST_CASE("a trusted peer (a worker) has a budget of its own and is never cut off for the total") {
  FakeSocket socket{{{"wk", 0}, {"c1", 0}, {"c2", 0}}, {}};
  const std::string chunk(1000, 'c');
  const int64_t cost = OutboundQueues::CostOf(Message("c1", chunk));
  OutboundBudgets budgets;
  budgets.per_peer = 3 * cost;
  budgets.per_trusted_peer = 10 * cost;
  budgets.total = 4 * cost;
  OutboundQueues queues(budgets);
  auto send = [&](const Frames& f) { return socket(f); };
  // The worker queues past a client's budget and past the total, and stays.
  for (int i = 0; i < 10; ++i) CHECK_FALSE(queues.Send(Message("wk", chunk), send, true));
  CHECK_FALSE(queues.IsCutOff("wk"));
  CHECK(queues.Send(Message("wk", chunk), send, true));  // its own budget still holds
  CHECK(queues.IsCutOff("wk"));
  // Clients: the total counts them all; the one that passes it is cut off.
  CHECK_FALSE(queues.Send(Message("c1", chunk), send));
  CHECK_FALSE(queues.Send(Message("c1", chunk), send));
  CHECK_FALSE(queues.Send(Message("c2", chunk), send));
  CHECK_FALSE(queues.Send(Message("c2", chunk), send));
  CHECK(queues.waiting_bytes() == 4 * cost);
  CHECK(queues.Send(Message("c2", chunk), send));  // under its own budget, over the total
  CHECK(queues.IsCutOff("c2"));
  CHECK_FALSE(queues.IsCutOff("c1"));
}
