#include "scheduler/cli/scheduler_client.h"

#include <algorithm>

#include "common/clock.h"
#include "common/ids.h"

namespace kiln::cli {

SchedulerClient::SchedulerClient(ClientSettings settings, transport::Context* shared_context)
    : settings_(std::move(settings)),
      own_context_(shared_context ? nullptr : std::make_unique<transport::Context>()),
      context_(shared_context ? shared_context : own_context_.get()) {
  if (!settings_.problem.ok()) return;
  auto keys = transport::NewCurveKeyPair();
  if (!keys.ok()) {
    settings_.problem = keys.status();
    return;
  }
  own_keys_ = *keys;
  Reconnect();
}

SchedulerClient::~SchedulerClient() = default;

void SchedulerClient::Reconnect() {
  socket_ = std::make_unique<transport::Socket>(*context_, transport::SocketKind::kDealer);
  Status curve = socket_->MakeCurveClient(settings_.server_key, own_keys_);
  if (!curve.ok()) settings_.problem = curve;
  (void)socket_->WatchHandshakes();
  (void)socket_->Connect(settings_.address);  // a bad address is reported by the first call
}

std::string SchedulerClient::NextId() { return NewRequestId().substr(0, 12) + "-" +
                                              std::to_string(++counter_); }

std::optional<Status> SchedulerClient::HandshakeRefused() {
  auto report = socket_->Handshakes();
  // One failure may be a scheduler restarting mid-handshake; two in a row with no success is
  // the scheduler refusing our key exchange.
  if (report.succeeded > 0 || report.failed < 2) return std::nullopt;
  return Status::Unauthenticated(
      "the scheduler at " + settings_.address + " dropped the connection during the encryption "
      "handshake: the server key this client pins (" + settings_.server_key.substr(0, 8) +
      "...) is not that scheduler's. Get the right one with `kiln-scheduler key show` on the "
      "scheduler host and run `kiln login` again (or set KILN_SERVER_KEY)");
}

Result<protocol::Envelope> SchedulerClient::CallFrames(protocol::Envelope request) {
  request.auth = settings_.token;
  auto envelope = Exchange(std::move(request));
  if (!envelope.ok() || envelope->type != protocol::ErrorReply::kType) return envelope;
  auto error = protocol::DecodeBody<protocol::ErrorReply>(*envelope);
  if (!error.ok()) return error.status();
  std::string message = error->message;
  for (const auto& e : error->errors) message += "\n  " + e;
  return Status(StatusCodeFromName(error->code), message);
}

Result<protocol::Envelope> SchedulerClient::Exchange(protocol::Envelope request) {
  if (!settings_.problem.ok()) return settings_.problem;
  if (request.id.empty()) request.id = NextId();
  last_timeout_reached_scheduler_ = false;
  Status connected = socket_->Connect(settings_.address);
  if (!connected.ok()) {
    return Status::InvalidArgument("scheduler address \"" + settings_.address +
                                   "\" is not valid: use tcp://HOST:PORT");
  }
  Status sent = socket_->Send({protocol::EncodeEnvelope(request)});
  if (!sent.ok()) return sent;
  SystemClock clock;
  const Millis deadline = clock.MonotonicMs() + settings_.timeout_ms;
  while (true) {
    const Millis left = deadline - clock.MonotonicMs();
    if (left <= 0) break;
    transport::Poller poller;
    poller.AddSocket(*socket_);
    KILN_RETURN_IF_ERROR(poller.Wait(static_cast<int>(std::min<Millis>(left, 100))));
    if (!poller.Ready(0)) {
      if (auto refused = HandshakeRefused()) return *refused;
      continue;
    }
    auto frames = socket_->Receive();
    if (!frames || frames->empty()) continue;
    auto envelope = protocol::DecodeEnvelope((*frames)[0]);
    if (!envelope.ok()) return envelope.status();
    if (envelope->id != request.id) continue;  // a stale reply
    last_binary_ = frames->size() > 1 ? std::move((*frames)[1]) : std::string();
    return envelope;
  }
  if (auto refused = HandshakeRefused()) return *refused;
  last_timeout_reached_scheduler_ = socket_->Handshakes().succeeded > 0;
  // Drop the socket so a late reply cannot be mistaken for the answer to a later request.
  Reconnect();
  return Status::Unavailable("no reply from the scheduler at " + settings_.address + " within " +
                             std::to_string(settings_.timeout_ms / 1000.0).substr(0, 3) +
                             " s: is kiln-scheduler running there? (set --scheduler or "
                             "KILN_SCHEDULER)");
}

}  // namespace kiln::cli
