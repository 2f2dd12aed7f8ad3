// A raw protocol peer for tests that play a worker or a client by hand (a fake worker that
// "loses" a launch, a hostile client): frames in, envelopes out, over CURVE like the real ones.
#pragma once

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "tests/integration/local_cluster.h"

namespace kiln::testing {

using kiln::protocol::DecodeEnvelope;
using kiln::protocol::Envelope;

// A raw DEALER that sends arbitrary frames over CURVE: as a client it adds a user's token (the
// admin's unless given) to every envelope that is a JSON object; as a worker it holds the cluster
// key.
class RawClient {
 public:
  // `token`: the user it speaks for (the admin's when empty); ignored for a worker.
  // `receive_queue`: how many messages ZeroMQ takes off the wire for it unread (0: the default).
  explicit RawClient(const LocalCluster& cluster, bool as_worker = false, std::string token = "",
                     int receive_queue = 0)
      : socket_(context_, kiln::transport::SocketKind::kDealer),
        token_(as_worker       ? ""
               : token.empty() ? cluster.admin_token()
                               : std::move(token)) {
    if (receive_queue > 0) socket_.SetHighWaterMarks(100000, receive_queue);
    cluster.ConnectSecurely(socket_, as_worker);
  }
  kiln::transport::Socket& socket() { return socket_; }
  Envelope Call(const transport::Frames& frames) {
    REQUIRE(socket_.Send(WithToken(frames)).ok());
    kiln::transport::Poller poller;
    poller.AddSocket(socket_);
    REQUIRE(poller.Wait(10000).ok());
    auto reply = socket_.Receive();
    REQUIRE(reply.has_value());
    auto envelope = DecodeEnvelope((*reply)[0]);
    REQUIRE(envelope.ok());
    return *envelope;
  }
  // Waits up to timeout_ms for a message of `type`, skipping (and dropping) others.
  std::optional<std::pair<Envelope, transport::Frames>> Expect(const std::string& type,
                                                               int timeout_ms) {
    return ExpectAnyOf({type}, timeout_ms);
  }
  std::optional<std::pair<Envelope, transport::Frames>> ExpectAnyOf(
      const std::vector<std::string>& types, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 100) {
      kiln::transport::Poller poller;
      poller.AddSocket(socket_);
      REQUIRE(poller.Wait(100).ok());
      while (auto frames = socket_.Receive()) {
        auto e = DecodeEnvelope((*frames)[0]);
        if (!e.ok()) continue;
        for (const auto& type : types) {
          if (e->type == type) return std::make_pair(*e, *frames);
        }
      }
    }
    return std::nullopt;
  }
  void Send(const transport::Frames& frames) { REQUIRE(socket_.Send(WithToken(frames)).ok()); }
  std::string ErrorOf(const transport::Frames& frames) {
    Envelope e = Call(frames);
    REQUIRE(e.type == "error");
    return e.body["message"].get<std::string>();
  }

 private:
  transport::Frames WithToken(transport::Frames frames) const {
    if (token_.empty() || frames.empty()) return frames;
    nlohmann::json j = nlohmann::json::parse(frames[0], nullptr, false);
    if (j.is_object()) {
      j["auth"] = token_;
      frames[0] = j.dump();
    }
    return frames;
  }
  kiln::transport::Context context_;
  kiln::transport::Socket socket_;
  std::string token_;
};

}  // namespace kiln::testing
