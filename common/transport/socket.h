// ZeroMQ sockets as kiln uses them. This folder is the only code that includes zmq.hpp; every
// zmq error is caught here and returned as a Status. A Socket is used by one thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/transport/curve.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace kiln::transport {

using Frames = std::vector<std::string>;

// One per process; outlives every Socket made from it.
class Context {
 public:
  Context();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  zmq::context_t& raw() { return *context_; }

 private:
  std::unique_ptr<zmq::context_t> context_;
};

enum class SocketKind { kRouter, kDealer, kPush, kPull, kRep };

enum class SendOutcome {
  kSent,  // taken by ZeroMQ
  kFull,  // the peer's queue is full (its high-water mark): try again later
  kGone,  // a ROUTER with SetRouterMandatory has no such peer (it disconnected)
};

class Socket {
 public:
  // A ROUTER hands a routing id over to the newest connection that claims it, so a worker that
  // reconnects under its stable identity is reachable at once.
  // Linger is 0 (pending messages are dropped on close) and incoming messages above
  // max_message_bytes are refused by ZeroMQ itself, so no peer can make us allocate without bound.
  Socket(Context& context, SocketKind kind, int64_t max_message_bytes = 256 << 20);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Binds and returns the actual endpoint (with the port chosen by the OS for "tcp://HOST:*").
  Result<std::string> Bind(const std::string& address);
  Status Connect(const std::string& address);
  // Dealer only, before Connect: the identity the ROUTER peer sees.
  Status SetRoutingId(const std::string& id);
  // How long close waits to deliver queued messages (default 0: drop them).
  void SetLinger(int ms);
  // Messages queued per peer in each direction before ZeroMQ pushes back: it refuses sends to
  // that peer, or stops reading that peer's connection until the queue drains.
  void SetHighWaterMarks(int send, int receive);
  // ROUTER only: a send to an unknown peer, or to one whose queue is full, fails (see TrySend)
  // instead of being dropped in silence.
  void SetRouterMandatory();

  // CURVE (before Bind): this socket is a server with `keys`; every peer must know keys.public_key.
  // With a non-empty `zap_domain`, each handshake is put to the ZapServer of the same Context,
  // whose answer becomes the "User-Id" of every message from that connection (see Receive).
  Status MakeCurveServer(const CurveKeyPair& keys, const std::string& zap_domain = "");
  // CURVE (before Connect): talk only to the server whose public key is `server_public_key`,
  // presenting `own` as this side's keypair.
  Status MakeCurveClient(const std::string& server_public_key, const CurveKeyPair& own);

  // Starts recording connection events, so that a client can tell a scheduler that does not
  // answer from one that drops it during the CURVE handshake (the wrong server key).
  Status WatchHandshakes();
  struct HandshakeReport {
    int connected = 0;   // TCP/ipc connections made
    int succeeded = 0;   // security handshakes completed
    int failed = 0;      // handshakes failed, or connections closed before one completed
    int refused = 0;     // of those, refused by the server's authentication (ZAP said no)
  };
  // Events recorded since WatchHandshakes (drains the monitor; non-blocking).
  HandshakeReport Handshakes();

  // Sends all frames as one message without blocking; a full queue or unknown ROUTER peer drops
  // the message and returns Unavailable. For a ROUTER, frames[0] is the peer identity.
  Status Send(const Frames& frames);
  // As Send, telling a full queue from a peer that is gone.
  SendOutcome TrySend(const Frames& frames);
  // Non-blocking; nullopt when nothing is waiting. `user_id`, when given, receives the ZAP
  // "User-Id" of the connection the message came on (empty without ZAP).
  std::optional<Frames> Receive(std::string* user_id = nullptr);

  zmq::socket_t& raw() { return *socket_; }

 private:
  SocketKind kind_;
  Context& context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<zmq::socket_t> monitor_;
  HandshakeReport handshakes_;
  bool connected_without_handshake_ = false;
};

// Waits on sockets and plain file descriptors together.
class Poller {
 public:
  Poller();
  ~Poller();
  // Returns the index to ask Ready() about.
  size_t AddSocket(Socket& socket);
  size_t AddFd(int fd);
  // Waits up to timeout_ms (-1: forever) for input on any item. Interrupted waits return OK.
  Status Wait(int timeout_ms);
  bool Ready(size_t index) const;
  void Clear();

 private:
  struct Items;
  std::unique_ptr<Items> items_;
};

}  // namespace kiln::transport
