#include "scheduler/service/service_transport.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/file_util.h"
#include "scheduler/service/outbound_queues.h"

namespace kiln::service {

namespace {
// A message is at most an envelope plus one checkpoint chunk (8 MiB); larger ones are refused by
// ZeroMQ before they are read. Each connection may have this many messages waiting before
// ZeroMQ stops reading it (the other connections are still served, fair-queued).
constexpr int64_t kMaxMessageBytes = 16 << 20;
constexpr int kMaxQueuedPerConnection = 256;
// Replies ZeroMQ holds for one connection (a couple: a high-water mark counts messages, and one
// checkpoint chunk is 8 MiB); more wait in OutboundQueues (outbound_queues.h has the budgets),
// past which the connection is cut off. An honest client has one request out at a time; a
// worker may have many (every attempt on it shares its connection), so its budget is larger.
constexpr int kZmqQueuedPerConnection = 2;
// While replies wait, the loop wakes this often to offer them again.
constexpr int kRetrySendMs = 5;
constexpr const char* kZapDomain = "kiln";

class ZmqServiceTransport final : public ServiceTransport {
 public:
  ZmqServiceTransport(std::unique_ptr<transport::ZapServer> zap,
                      std::unique_ptr<transport::Socket> socket, std::string endpoint)
      : zap_(std::move(zap)), socket_(std::move(socket)), endpoint_(std::move(endpoint)) {}

  const std::string& endpoint() const override { return endpoint_; }

  void Wait(int wait_ms, const ConnectionDecider& decide) override {
    if (queues_.HasWaiting()) wait_ms = std::min(wait_ms, kRetrySendMs);
    transport::Poller poller;
    poller.AddSocket(*socket_);
    poller.AddSocket(zap_->socket());
    Status waited = poller.Wait(wait_ms);
    if (!waited.ok()) spdlog::warn("{}", waited.ToString());
    zap_->AnswerPending(decide);
    queues_.Flush(try_send_);
  }

  std::optional<transport::Frames> Receive(std::string* connection) override {
    while (true) {
      auto frames = socket_->Receive(connection);
      if (!frames || frames->empty() || !queues_.IsCutOff(frames->front())) return frames;
    }
  }

  Status Send(const transport::Frames& frames, bool to_worker) override {
    if (frames.empty()) return Status::InvalidArgument("cannot send an empty message");
    if (queues_.IsCutOff(frames[0])) return Status::Unavailable("connection was cut off");
    const int64_t waiting_before = queues_.WaitingBytesFor(frames[0]);
    if (queues_.Send(frames, try_send_, to_worker)) {
      spdlog::warn(
          "cut off {} connection {}: it left {} MiB of replies unread ({} MiB wait for all "
          "connections); its requests are ignored from now on",
          to_worker ? "worker" : "client",
          HexOf(reinterpret_cast<const unsigned char*>(frames[0].data()), frames[0].size()),
          waiting_before >> 20, queues_.waiting_bytes() >> 20);
      return Status::Unavailable("connection cut off");
    }
    return Status::Ok();
  }

  int64_t WaitingBytes() const override { return queues_.waiting_bytes(); }

 private:
  std::unique_ptr<transport::ZapServer> zap_;
  std::unique_ptr<transport::Socket> socket_;
  std::string endpoint_;
  OutboundQueues queues_;
  TrySend try_send_ = [this](const transport::Frames& f) { return socket_->TrySend(f); };
};

}  // namespace

Result<std::unique_ptr<ServiceTransport>> BindZmqTransport(transport::Context& context,
                                                           const transport::CurveKeyPair& keys,
                                                           const std::string& listen) {
  // The ZAP handler must exist before the first handshake.
  auto zap = transport::ZapServer::Bind(context);
  if (!zap.ok()) return zap.status();
  auto socket = std::make_unique<transport::Socket>(context, transport::SocketKind::kRouter,
                                                    kMaxMessageBytes);
  socket->SetHighWaterMarks(kZmqQueuedPerConnection, kMaxQueuedPerConnection);
  socket->SetRouterMandatory();
  KILN_RETURN_IF_ERROR(socket->MakeCurveServer(keys, kZapDomain));
  auto endpoint = socket->Bind(listen);
  if (!endpoint.ok()) return endpoint.status();
  return std::unique_ptr<ServiceTransport>(new ZmqServiceTransport(
      std::move(zap).value(), std::move(socket), *endpoint));
}

}  // namespace kiln::service
