#include "scheduler/service/service_transport.h"

#include <spdlog/spdlog.h>

namespace kiln::service {

namespace {
// A message is at most an envelope plus one checkpoint chunk (8 MiB); larger ones are refused by
// ZeroMQ before they are read. Each connection may have this many messages waiting before
// ZeroMQ stops reading it (the other connections are still served, fair-queued).
constexpr int64_t kMaxMessageBytes = 16 << 20;
constexpr int kMaxQueuedPerConnection = 256;
constexpr const char* kZapDomain = "kiln";

class ZmqServiceTransport final : public ServiceTransport {
 public:
  ZmqServiceTransport(std::unique_ptr<transport::ZapServer> zap,
                      std::unique_ptr<transport::Socket> socket, std::string endpoint)
      : zap_(std::move(zap)), socket_(std::move(socket)), endpoint_(std::move(endpoint)) {}

  const std::string& endpoint() const override { return endpoint_; }

  void Wait(int wait_ms, const ConnectionDecider& decide) override {
    transport::Poller poller;
    poller.AddSocket(*socket_);
    poller.AddSocket(zap_->socket());
    Status waited = poller.Wait(wait_ms);
    if (!waited.ok()) spdlog::warn("{}", waited.ToString());
    zap_->AnswerPending(decide);
  }

  std::optional<transport::Frames> Receive(std::string* connection) override {
    return socket_->Receive(connection);
  }

  Status Send(const transport::Frames& frames) override { return socket_->Send(frames); }

 private:
  std::unique_ptr<transport::ZapServer> zap_;
  std::unique_ptr<transport::Socket> socket_;
  std::string endpoint_;
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
  socket->SetHighWaterMarks(100000, kMaxQueuedPerConnection);
  KILN_RETURN_IF_ERROR(socket->MakeCurveServer(keys, kZapDomain));
  auto endpoint = socket->Bind(listen);
  if (!endpoint.ok()) return endpoint.status();
  return std::unique_ptr<ServiceTransport>(new ZmqServiceTransport(
      std::move(zap).value(), std::move(socket), *endpoint));
}

}  // namespace kiln::service
