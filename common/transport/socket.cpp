#include "common/transport/socket.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include <zmq.hpp>

namespace kiln::transport {

Context::Context() : context_(std::make_unique<zmq::context_t>(1)) {}
Context::~Context() = default;

namespace {

zmq::socket_type ToZmq(SocketKind kind) {
  switch (kind) {
    case SocketKind::kRouter: return zmq::socket_type::router;
    case SocketKind::kDealer: return zmq::socket_type::dealer;
    case SocketKind::kPush: return zmq::socket_type::push;
    case SocketKind::kPull: return zmq::socket_type::pull;
    case SocketKind::kRep: return zmq::socket_type::rep;
  }
  return zmq::socket_type::dealer;
}

}  // namespace

Socket::Socket(Context& context, SocketKind kind, int64_t max_message_bytes)
    : kind_(kind), context_(context), socket_(std::make_unique<zmq::socket_t>(context.raw(), ToZmq(kind))) {
  socket_->set(zmq::sockopt::linger, 0);
  socket_->set(zmq::sockopt::maxmsgsize, max_message_bytes);
  socket_->set(zmq::sockopt::sndhwm, 100000);
  socket_->set(zmq::sockopt::rcvhwm, 100000);
  if (kind == SocketKind::kRouter) socket_->set(zmq::sockopt::router_handover, 1);
  if (kind == SocketKind::kDealer) {
    socket_->set(zmq::sockopt::reconnect_ivl, 100);
    socket_->set(zmq::sockopt::reconnect_ivl_max, 2000);
  }
}

Socket::~Socket() = default;

Result<std::string> Socket::Bind(const std::string& address) {
  try {
    socket_->bind(address);
    return socket_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Unavailable("cannot bind " + address + ": " + e.what());
  }
}

Status Socket::Connect(const std::string& address) {
  try {
    socket_->connect(address);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument("cannot connect to " + address + ": " + e.what());
  }
}

Status Socket::SetRoutingId(const std::string& id) {
  try {
    socket_->set(zmq::sockopt::routing_id, id);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument("invalid routing id: " + std::string(e.what()));
  }
}

void Socket::SetLinger(int ms) { socket_->set(zmq::sockopt::linger, ms); }

void Socket::SetHighWaterMarks(int send, int receive) {
  socket_->set(zmq::sockopt::sndhwm, send);
  socket_->set(zmq::sockopt::rcvhwm, receive);
}

Status Socket::MakeCurveServer(const CurveKeyPair& keys, const std::string& zap_domain) {
  try {
    socket_->set(zmq::sockopt::curve_server, 1);
    socket_->set(zmq::sockopt::curve_secretkey, keys.secret_key);
    // libzmq admits every CURVE client when no ZAP handler is bound: bind the ZapServer first.
    if (!zap_domain.empty()) socket_->set(zmq::sockopt::zap_domain, zap_domain);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(std::string("cannot make a CURVE server: ") + e.what());
  }
}

Status Socket::MakeCurveClient(const std::string& server_public_key, const CurveKeyPair& own) {
  try {
    socket_->set(zmq::sockopt::curve_serverkey, server_public_key);
    socket_->set(zmq::sockopt::curve_publickey, own.public_key);
    socket_->set(zmq::sockopt::curve_secretkey, own.secret_key);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(std::string("cannot make a CURVE client: ") + e.what());
  }
}

Status Socket::WatchHandshakes() {
  const std::string address = "inproc://kiln-monitor-" +
                              std::to_string(reinterpret_cast<uintptr_t>(this));
  if (zmq_socket_monitor(socket_->handle(), address.c_str(),
                         ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                             ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
    return Status::Internal("cannot monitor the socket: " + std::string(zmq_strerror(zmq_errno())));
  }
  try {
    monitor_ = std::make_unique<zmq::socket_t>(context_.raw(), zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(address);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    monitor_.reset();
    return Status::Internal(std::string("cannot monitor the socket: ") + e.what());
  }
}

Socket::HandshakeReport Socket::Handshakes() {
  if (!monitor_) return handshakes_;
  try {
    while (true) {
      zmq::message_t event;
      if (!monitor_->recv(event, zmq::recv_flags::dontwait)) break;
      zmq::message_t address;  // every event is two frames: [id:16 value:32][endpoint]
      if (event.more()) (void)monitor_->recv(address, zmq::recv_flags::dontwait);
      if (event.size() < sizeof(uint16_t)) continue;
      uint16_t id = 0;
      std::memcpy(&id, event.data(), sizeof id);
      switch (id) {
        case ZMQ_EVENT_CONNECTED:
          ++handshakes_.connected;
          connected_without_handshake_ = true;
          break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
          ++handshakes_.succeeded;
          connected_without_handshake_ = false;
          break;
        case ZMQ_EVENT_DISCONNECTED:
          if (connected_without_handshake_) ++handshakes_.failed;
          connected_without_handshake_ = false;
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          ++handshakes_.failed;
          ++handshakes_.refused;
          connected_without_handshake_ = false;
          break;
        default:  // another HANDSHAKE_FAILED_* event
          ++handshakes_.failed;
          connected_without_handshake_ = false;
          break;
      }
    }
  } catch (const zmq::error_t&) {
  }
  return handshakes_;
}

void Socket::SetRouterMandatory() { socket_->set(zmq::sockopt::router_mandatory, true); }

SendOutcome Socket::TrySend(const Frames& frames) {
  if (frames.empty()) return SendOutcome::kGone;
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = zmq::send_flags::dontwait;
      if (i + 1 < frames.size()) flags = flags | zmq::send_flags::sndmore;
      // Only the first frame can fail: the rest of a message is queued with it.
      if (!socket_->send(zmq::buffer(frames[i].data(), frames[i].size()), flags)) {
        return SendOutcome::kFull;
      }
    }
    return SendOutcome::kSent;
  } catch (const zmq::error_t& e) {
    return e.num() == EAGAIN ? SendOutcome::kFull : SendOutcome::kGone;
  }
}

Status Socket::Send(const Frames& frames) {
  if (frames.empty()) return Status::InvalidArgument("cannot send an empty message");
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = zmq::send_flags::dontwait;
      if (i + 1 < frames.size()) flags = flags | zmq::send_flags::sndmore;
      auto sent = socket_->send(zmq::buffer(frames[i].data(), frames[i].size()), flags);
      if (!sent) {
        // Only the first frame can fail for lack of room: the rest of a message is queued atomically.
        return Status::Unavailable("send queue full, message dropped");
      }
    }
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return Status::Unavailable(std::string("send failed: ") + e.what());
  }
}

std::optional<Frames> Socket::Receive(std::string* user_id) {
  try {
    Frames frames;
    if (user_id != nullptr) user_id->clear();
    while (true) {
      zmq::message_t part;
      auto got = socket_->recv(part, zmq::recv_flags::dontwait);
      if (!got) {
        if (frames.empty()) return std::nullopt;
        continue;  // parts of a message arrive together; this cannot spin for long
      }
      // A ROUTER makes the identity frame itself; the parts read off the wire carry the
      // connection's metadata.
      if (user_id != nullptr && user_id->empty()) {
        const char* value = zmq_msg_gets(part.handle(), "User-Id");
        if (value != nullptr) *user_id = value;
      }
      frames.emplace_back(static_cast<const char*>(part.data()), part.size());
      if (!part.more()) return frames;
    }
  } catch (const zmq::error_t&) {
    return std::nullopt;
  }
}

struct Poller::Items {
  std::vector<zmq::pollitem_t> items;
};

Poller::Poller() : items_(std::make_unique<Items>()) {}
Poller::~Poller() = default;

size_t Poller::AddSocket(Socket& socket) {
  items_->items.push_back({socket.raw().handle(), 0, ZMQ_POLLIN, 0});
  return items_->items.size() - 1;
}

size_t Poller::AddFd(int fd) {
  items_->items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
  return items_->items.size() - 1;
}

Status Poller::Wait(int timeout_ms) {
  for (auto& item : items_->items) item.revents = 0;
  try {
    zmq::poll(items_->items.data(), items_->items.size(), std::chrono::milliseconds(timeout_ms));
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return Status::Ok();
    return Status::Internal(std::string("poll failed: ") + e.what());
  }
}

bool Poller::Ready(size_t index) const {
  const auto& item = items_->items[index];
  return (item.revents & (ZMQ_POLLIN | ZMQ_POLLERR)) != 0;
}

void Poller::Clear() { items_->items.clear(); }

}  // namespace kiln::transport
