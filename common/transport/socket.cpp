#include "common/transport/socket.h"

#include <cerrno>

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
  }
  return zmq::socket_type::dealer;
}

}  // namespace

Socket::Socket(Context& context, SocketKind kind, int64_t max_message_bytes)
    : kind_(kind), socket_(std::make_unique<zmq::socket_t>(context.raw(), ToZmq(kind))) {
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

std::optional<Frames> Socket::Receive() {
  try {
    Frames frames;
    while (true) {
      zmq::message_t part;
      auto got = socket_->recv(part, zmq::recv_flags::dontwait);
      if (!got) {
        if (frames.empty()) return std::nullopt;
        continue;  // parts of a message arrive together; this cannot spin for long
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
