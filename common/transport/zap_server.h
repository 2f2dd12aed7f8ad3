// The ZeroMQ authentication protocol (ZAP, RFC 27) handler of one Context: every CURVE handshake
// on a server socket with a ZAP domain is put to it, and its verdict decides whether the
// connection is accepted and which "User-Id" its messages carry (Socket::Receive).
// Bind it before the server socket accepts connections; answer from the thread that owns it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/transport/socket.h"

namespace kiln::transport {

struct ZapRequest {
  std::string domain;
  std::string address;     // the peer's IP address
  std::string mechanism;   // "CURVE" for kiln's sockets
  std::string public_key;  // the client's CURVE public key, Z85; empty for other mechanisms
};

struct ZapVerdict {
  bool allow = false;
  std::string user_id;  // what Receive reports for this connection's messages
  std::string reason;   // status text of a refusal
};

class ZapServer {
 public:
  static Result<std::unique_ptr<ZapServer>> Bind(Context& context);
  Socket& socket() { return socket_; }
  // Answers every request waiting, returns how many.
  int AnswerPending(const std::function<ZapVerdict(const ZapRequest&)>& decide);

 private:
  explicit ZapServer(Context& context) : socket_(context, SocketKind::kRep, 64 << 10) {}
  Socket socket_;
};

}  // namespace kiln::transport
