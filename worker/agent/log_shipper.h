// Ships each attempt's output lines to the scheduler so that `kiln logs` shows every line exactly
// once, across reconnects, scheduler restarts and stalls. The lines of one attempt on this node
// are numbered from 0 and kept until the scheduler acknowledges them (log_ack); the scheduler
// stores each number once, so resending is always safe. Unacknowledged lines are sent again when
// the scheduler asks (a rewind after a gap), after a reconnect (Restart), and when no
// acknowledgement came for kResendAfterMs.
//
// Bounded: at most kMaxBytesPerAttempt of unacknowledged lines per attempt. Past that the oldest
// are dropped and counted; each batch says which line is the oldest still held, so the scheduler
// records the loss ("N lines of output were lost ...") instead of waiting for them. The node's
// <run-dir>/output.log keeps every line regardless.
//
// No I/O but the send callback; the time is an argument.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/protocol/codec.h"

namespace kiln::agent {

class LogShipper {
 public:
  using Send = std::function<void(protocol::Frames)>;
  static constexpr size_t kMaxBytesPerAttempt = 8 << 20;
  static constexpr size_t kMaxBatchBytes = 1 << 20;  // well under the 4 MiB envelope limit
  static constexpr size_t kMaxLinesPerBatch = 500;
  static constexpr Millis kResendAfterMs = 5000;

  explicit LogShipper(Send send) : send_(std::move(send)) {}

  // New lines of the attempt; sent now.
  void Add(int64_t job_id, int64_t attempt, std::vector<std::string> lines, Millis now);
  // Lines numbered from `first_line` that an earlier agent process shipped and the scheduler
  // never acknowledged (read back from the spool, log_spool.h); sent at the next Restart (when
  // the agent has registered).
  void Restore(int64_t job_id, int64_t attempt, int64_t first_line, std::vector<std::string> lines);
  void OnAck(const protocol::LogAck& ack, Millis now);
  // Resends what has waited too long for an acknowledgement.
  void Pump(Millis now);
  // A new connection: whatever was sent on the old one may be lost; resend it all.
  void Restart(Millis now);
  // Forgets the attempts whose lines are all acknowledged, except those in `in_use` (still
  // running, or exit not yet acknowledged: more lines may come). Returns those forgotten.
  std::vector<std::pair<int64_t, int64_t>> ForgetAcknowledged(
      const std::set<std::pair<int64_t, int64_t>>& in_use);
  bool HasUnacknowledged(int64_t job_id, int64_t attempt) const;
  bool AnyUnacknowledged() const;
  int64_t dropped(int64_t job_id, int64_t attempt) const;

 private:
  using Key = std::pair<int64_t, int64_t>;
  struct Stream {
    std::deque<std::string> held;  // lines acked_..next_line_-1 (those not dropped)
    int64_t first_held = 0;        // number of held.front()
    int64_t next_line = 0;         // number the next added line gets
    int64_t sent_upto = 0;         // lines before it were sent since the last rewind
    size_t bytes = 0;
    int64_t dropped = 0;
    Millis waiting_since = 0;  // oldest unacknowledged send (0: none waiting)
  };
  // Sends held lines from sent_upto on, in batches.
  void SendFrom(const Key& key, Stream& s, Millis now);

  Send send_;
  std::map<Key, Stream> streams_;
};

}  // namespace kiln::agent
