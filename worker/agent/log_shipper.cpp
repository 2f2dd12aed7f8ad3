#include "worker/agent/log_shipper.h"

#include <algorithm>

namespace kiln::agent {

void LogShipper::Add(int64_t job_id, int64_t attempt, std::vector<std::string> lines, Millis now) {
  if (lines.empty()) return;
  const Key key{job_id, attempt};
  Stream& s = streams_[key];
  for (auto& line : lines) {
    s.bytes += line.size();
    s.held.push_back(std::move(line));
    ++s.next_line;
  }
  while (s.bytes > kMaxBytesPerAttempt && s.held.size() > 1) {
    s.bytes -= s.held.front().size();
    s.held.pop_front();
    ++s.first_held;
    ++s.dropped;
  }
  s.sent_upto = std::max(s.sent_upto, s.first_held);
  SendFrom(key, s, now);
}

void LogShipper::Restore(int64_t job_id, int64_t attempt, int64_t first_line,
                         std::vector<std::string> lines) {
  if (lines.empty()) return;
  Stream& s = streams_[{job_id, attempt}];
  s = Stream{};
  s.first_held = first_line;
  s.next_line = first_line + static_cast<int64_t>(lines.size());
  s.sent_upto = first_line;
  for (auto& line : lines) {
    s.bytes += line.size();
    s.held.push_back(std::move(line));
  }
}

void LogShipper::SendFrom(const Key& key, Stream& s, Millis now) {
  while (s.sent_upto < s.next_line) {
    protocol::LogBatch batch{key.first, key.second, {}, s.sent_upto, s.first_held};
    size_t bytes = 0;
    for (int64_t n = s.sent_upto; n < s.next_line; ++n) {
      const std::string& line = s.held[static_cast<size_t>(n - s.first_held)];
      if (!batch.lines.empty() &&
          (batch.lines.size() >= kMaxLinesPerBatch || bytes + line.size() > kMaxBatchBytes)) {
        break;
      }
      bytes += line.size();
      batch.lines.push_back(line);
    }
    s.sent_upto += static_cast<int64_t>(batch.lines.size());
    send_(protocol::Encode(batch));
  }
  if (s.waiting_since == 0) s.waiting_since = now;
}

void LogShipper::OnAck(const protocol::LogAck& ack, Millis now) {
  auto it = streams_.find({ack.job_id, ack.attempt});
  if (it == streams_.end()) return;
  Stream& s = it->second;
  const int64_t upto = std::min(ack.next_line, s.next_line);
  while (s.first_held < upto && !s.held.empty()) {
    s.bytes -= s.held.front().size();
    s.held.pop_front();
    ++s.first_held;
  }
  s.first_held = std::max(s.first_held, upto);
  s.waiting_since = s.first_held < s.sent_upto ? now : 0;
  if (ack.rewind) {
    s.sent_upto = std::max(s.first_held, upto);
    SendFrom(it->first, s, now);
  }
}

void LogShipper::Pump(Millis now) {
  for (auto& [key, s] : streams_) {
    if (s.waiting_since == 0 || s.first_held >= s.next_line) continue;
    if (now - s.waiting_since < kResendAfterMs) continue;
    s.sent_upto = s.first_held;
    s.waiting_since = 0;
    SendFrom(key, s, now);
  }
}

void LogShipper::Restart(Millis now) {
  for (auto& [key, s] : streams_) {
    s.sent_upto = s.first_held;
    s.waiting_since = 0;
    SendFrom(key, s, now);
  }
}

std::vector<LogShipper::Key> LogShipper::ForgetAcknowledged(const std::set<Key>& in_use) {
  std::vector<Key> forgotten;
  for (auto it = streams_.begin(); it != streams_.end();) {
    const bool done = it->second.first_held >= it->second.next_line;
    if (done && in_use.count(it->first) == 0) {
      forgotten.push_back(it->first);
      it = streams_.erase(it);
    } else {
      ++it;
    }
  }
  return forgotten;
}

bool LogShipper::HasUnacknowledged(int64_t job_id, int64_t attempt) const {
  auto it = streams_.find({job_id, attempt});
  return it != streams_.end() && it->second.first_held < it->second.next_line;
}

bool LogShipper::AnyUnacknowledged() const {
  for (const auto& [key, s] : streams_) {
    if (s.first_held < s.next_line) return true;
  }
  return false;
}

int64_t LogShipper::dropped(int64_t job_id, int64_t attempt) const {
  auto it = streams_.find({job_id, attempt});
  return it == streams_.end() ? 0 : it->second.dropped;
}

}  // namespace kiln::agent
