// The CLI's connection to the scheduler: one request, one reply, bounded by a timeout, so an
// unreachable scheduler gives a clear error within seconds instead of a hang. The connection is
// CURVE-encrypted to the pinned server key, and every request carries the user's token.
#pragma once

#include <memory>
#include <string>

#include "common/protocol/codec.h"
#include "common/transport/socket.h"

namespace kiln::cli {

// Where and as whom to connect. `problem`, when not OK, is returned by every call (e.g. no
// credentials yet), so commands report it the same way as any other error.
struct ClientSettings {
  std::string address;
  std::string server_key;  // Z85
  std::string token;
  std::string user;
  int timeout_ms = 5000;
  Status problem;
};

class SchedulerClient {
 public:
  // `shared_context`: a ZeroMQ context to open the socket on (it must outlive the client), for
  // a daemon that keeps several clients; without it the client has its own.
  explicit SchedulerClient(ClientSettings settings, transport::Context* shared_context = nullptr);
  ~SchedulerClient();

  const std::string& address() const { return settings_.address; }
  // The binary frame that came with the last reply (e.g. checkpoint bytes); empty if none.
  const std::string& last_binary() const { return last_binary_; }

  // After a call that timed out: whether the encrypted connection to the scheduler was up (it got
  // the request but did not answer in time), as opposed to a scheduler that is not there at all.
  bool last_timeout_reached_scheduler() const { return last_timeout_reached_scheduler_; }

  // Sends `message` and waits for the reply with the same envelope id. An `error` reply becomes a
  // non-OK Status whose message includes every field error, one per line.
  template <typename M>
  Result<protocol::Envelope> Call(const M& message) {
    return CallFrames(protocol::MakeEnvelope(message, NextId()));
  }

  // One round trip of `request` as it is (its auth included; an empty id is given one): the reply
  // envelope, an `error` one included. A non-OK Status only when no reply came (unreachable,
  // timed out, refused handshake, undecodable reply).
  Result<protocol::Envelope> Exchange(protocol::Envelope request);

 private:
  Result<protocol::Envelope> CallFrames(protocol::Envelope request);
  std::string NextId();
  void Reconnect();
  // The error for a scheduler that dropped us during the handshake, if it did.
  std::optional<Status> HandshakeRefused();

  ClientSettings settings_;
  transport::CurveKeyPair own_keys_;  // made per process: the key only encrypts
  std::unique_ptr<transport::Context> own_context_;
  transport::Context* context_;
  std::unique_ptr<transport::Socket> socket_;
  int64_t counter_ = 0;
  std::string last_binary_;
  bool last_timeout_reached_scheduler_ = false;
};

// Decodes a reply of type M, or returns the status of a mismatched reply.
template <typename M>
Result<M> ReplyAs(const Result<protocol::Envelope>& reply) {
  if (!reply.ok()) return reply.status();
  return protocol::DecodeBody<M>(*reply);
}

}  // namespace kiln::cli
