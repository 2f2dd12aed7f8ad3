// The CLI's connection to the scheduler: one request, one reply, bounded by a timeout, so an
// unreachable scheduler gives a clear error within seconds instead of a hang.
#pragma once

#include <memory>
#include <string>

#include "common/protocol/codec.h"
#include "common/transport/socket.h"

namespace kiln::cli {

class SchedulerClient {
 public:
  SchedulerClient(std::string address, int timeout_ms);
  ~SchedulerClient();

  const std::string& address() const { return address_; }
  // The binary frame that came with the last reply (e.g. checkpoint bytes); empty if none.
  const std::string& last_binary() const { return last_binary_; }

  // Sends `message` and waits for the reply with the same envelope id. An `error` reply becomes a
  // non-OK Status whose message includes every field error, one per line.
  template <typename M>
  Result<protocol::Envelope> Call(const M& message) {
    return CallFrames(protocol::MakeEnvelope(message, NextId()));
  }

 private:
  Result<protocol::Envelope> CallFrames(const protocol::Envelope& request);
  std::string NextId();
  void Reconnect();

  std::string address_;
  int timeout_ms_;
  transport::Context context_;
  std::unique_ptr<transport::Socket> socket_;
  int64_t counter_ = 0;
  std::string last_binary_;
};

// Decodes a reply of type M, or returns the status of a mismatched reply.
template <typename M>
Result<M> ReplyAs(const Result<protocol::Envelope>& reply) {
  if (!reply.ok()) return reply.status();
  return protocol::DecodeBody<M>(*reply);
}

}  // namespace kiln::cli
