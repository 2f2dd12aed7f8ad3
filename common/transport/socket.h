// ZeroMQ sockets as kiln uses them. This folder is the only code that includes zmq.hpp; every
// zmq error is caught here and returned as a Status. A Socket is used by one thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

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

enum class SocketKind { kRouter, kDealer, kPush, kPull };

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

  // Sends all frames as one message without blocking; a full queue or unknown ROUTER peer drops
  // the message and returns Unavailable. For a ROUTER, frames[0] is the peer identity.
  Status Send(const Frames& frames);
  // Non-blocking; nullopt when nothing is waiting.
  std::optional<Frames> Receive();

  zmq::socket_t& raw() { return *socket_; }

 private:
  SocketKind kind_;
  std::unique_ptr<zmq::socket_t> socket_;
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
