// What the scheduler has to send, per connection, that the connection has not yet taken.
//
// ZeroMQ's own queue toward a peer is kept a few messages deep (a high-water mark counts
// messages, not bytes, and one checkpoint chunk is 8 MiB); what does not fit waits here, in order,
// and is offered again on each Flush. A peer whose waiting bytes pass the budget reads far slower
// than it asks (a client that pipelines ckpt_read and never reads the replies): it is cut off.
// Its queue is dropped, and from then on messages to it are dropped and messages from it are
// ignored (IsCutOff), so that one connection cannot make the scheduler buffer without bound.
// ZeroMQ gives each connection a new routing id, so a reconnecting client starts afresh.
//
// Pure logic: the sending itself is the caller's TrySend; no I/O, no clock.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/transport/socket.h"

namespace kiln::service {

using transport::SendOutcome;
// Sends [peer][frames...] without blocking.
using TrySend = std::function<SendOutcome(const transport::Frames&)>;

struct OutboundBudgets {
  int64_t per_peer = 24 << 20;  // the most one peer may have waiting before it is cut off
  // A trusted peer (an admitted worker: all its attempts' launches, acks and resume chunks share
  // one connection) may have this much waiting; it is never cut off for the total.
  int64_t per_trusted_peer = 512 << 20;
  // Past this many bytes waiting for all peers together, an untrusted peer that adds more is
  // cut off (many connections, each under its own budget).
  int64_t total = 256 << 20;
  size_t remembered_cut_offs = 4096;  // the oldest cut-off peers are forgotten
};

class OutboundQueues {
 public:
  explicit OutboundQueues(OutboundBudgets budgets = {});

  // Sends frames (frames[0] names the peer) at once if nothing waits for that peer, else queues
  // it behind what does. Returns true when this message cut the peer off.
  bool Send(transport::Frames frames, const TrySend& try_send, bool trusted = false);
  // Offers every waiting message again, in order per peer, until its peer is full.
  void Flush(const TrySend& try_send);

  bool IsCutOff(const std::string& peer) const { return cut_off_.count(peer) != 0; }
  bool HasWaiting() const { return !waiting_.empty(); }
  int64_t waiting_bytes() const { return waiting_bytes_; }
  int64_t WaitingBytesFor(const std::string& peer) const;

  // What a message costs against the budget: its frames and a fixed overhead, so that a flood of
  // empty messages is bounded too.
  static int64_t CostOf(const transport::Frames& frames);

 private:
  struct Queue {
    std::deque<transport::Frames> messages;
    int64_t bytes = 0;
  };
  // Sends the peer's queue in order until it is full; erases it when emptied or the peer is gone.
  void Drain(std::unordered_map<std::string, Queue>::iterator it, const TrySend& try_send);
  void CutOff(const std::string& peer);

  OutboundBudgets budgets_;
  std::unordered_map<std::string, Queue> waiting_;
  int64_t waiting_bytes_ = 0;
  std::unordered_set<std::string> cut_off_;
  std::deque<std::string> cut_off_order_;
};

}  // namespace kiln::service
