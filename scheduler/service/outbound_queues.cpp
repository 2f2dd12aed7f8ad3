#include "scheduler/service/outbound_queues.h"

#include <utility>

namespace kiln::service {

namespace {
constexpr int64_t kOverheadPerMessage = 256;
}  // namespace

OutboundQueues::OutboundQueues(OutboundBudgets budgets) : budgets_(budgets) {}

int64_t OutboundQueues::CostOf(const transport::Frames& frames) {
  int64_t bytes = kOverheadPerMessage;
  for (const auto& f : frames) bytes += static_cast<int64_t>(f.size());
  return bytes;
}

int64_t OutboundQueues::WaitingBytesFor(const std::string& peer) const {
  auto it = waiting_.find(peer);
  return it == waiting_.end() ? 0 : it->second.bytes;
}

bool OutboundQueues::Send(transport::Frames frames, const TrySend& try_send, bool trusted) {
  if (frames.empty()) return false;
  const std::string& peer = frames[0];
  if (IsCutOff(peer)) return false;
  auto it = waiting_.find(peer);
  if (it == waiting_.end()) {
    const SendOutcome outcome = try_send(frames);
    if (outcome != SendOutcome::kFull) return false;  // sent, or nobody to send it to
    it = waiting_.emplace(peer, Queue{}).first;
  }
  const int64_t cost = CostOf(frames);
  const bool over_own =
      it->second.bytes + cost > (trusted ? budgets_.per_trusted_peer : budgets_.per_peer);
  const bool over_total = !trusted && waiting_bytes_ + cost > budgets_.total;
  if (over_own || over_total) {
    CutOff(peer);
    return true;
  }
  it->second.bytes += cost;
  waiting_bytes_ += cost;
  it->second.messages.push_back(std::move(frames));
  return false;
}

void OutboundQueues::Flush(const TrySend& try_send) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    auto next = std::next(it);
    Drain(it, try_send);
    it = next;
  }
}

void OutboundQueues::Drain(std::unordered_map<std::string, Queue>::iterator it,
                           const TrySend& try_send) {
  Queue& queue = it->second;
  while (!queue.messages.empty()) {
    const SendOutcome outcome = try_send(queue.messages.front());
    if (outcome == SendOutcome::kFull) return;
    if (outcome == SendOutcome::kGone) break;  // the rest cannot be delivered either
    const int64_t cost = CostOf(queue.messages.front());
    queue.bytes -= cost;
    waiting_bytes_ -= cost;
    queue.messages.pop_front();
  }
  waiting_bytes_ -= queue.bytes;
  waiting_.erase(it);
}

void OutboundQueues::CutOff(const std::string& peer) {
  auto it = waiting_.find(peer);
  if (it != waiting_.end()) {
    waiting_bytes_ -= it->second.bytes;
    waiting_.erase(it);
  }
  if (!cut_off_.insert(peer).second) return;
  cut_off_order_.push_back(peer);
  while (cut_off_order_.size() > budgets_.remembered_cut_offs) {
    cut_off_.erase(cut_off_order_.front());
    cut_off_order_.pop_front();
  }
}

}  // namespace kiln::service
