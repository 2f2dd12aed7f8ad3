#include "scheduler/cli/scheduler_client.h"

#include "common/clock.h"
#include "common/ids.h"

namespace kiln::cli {

SchedulerClient::SchedulerClient(std::string address, int timeout_ms)
    : address_(std::move(address)), timeout_ms_(timeout_ms) {
  Reconnect();
}

SchedulerClient::~SchedulerClient() = default;

void SchedulerClient::Reconnect() {
  socket_ = std::make_unique<transport::Socket>(context_, transport::SocketKind::kDealer);
  (void)socket_->Connect(address_);  // a bad address is reported by the first call
}

std::string SchedulerClient::NextId() { return NewRequestId().substr(0, 12) + "-" +
                                              std::to_string(++counter_); }

Result<protocol::Envelope> SchedulerClient::CallFrames(const protocol::Envelope& request) {
  Status connected = socket_->Connect(address_);
  if (!connected.ok()) {
    return Status::InvalidArgument("scheduler address \"" + address_ +
                                   "\" is not valid: use tcp://HOST:PORT");
  }
  Status sent = socket_->Send({protocol::EncodeEnvelope(request)});
  if (!sent.ok()) return sent;
  SystemClock clock;
  const Millis deadline = clock.MonotonicMs() + timeout_ms_;
  while (true) {
    const Millis left = deadline - clock.MonotonicMs();
    if (left <= 0) break;
    transport::Poller poller;
    poller.AddSocket(*socket_);
    KILN_RETURN_IF_ERROR(poller.Wait(static_cast<int>(left)));
    if (!poller.Ready(0)) continue;
    auto frames = socket_->Receive();
    if (!frames || frames->empty()) continue;
    auto envelope = protocol::DecodeEnvelope((*frames)[0]);
    if (!envelope.ok()) return envelope.status();
    if (envelope->id != request.id && !request.id.empty()) continue;  // a stale reply
    last_binary_ = frames->size() > 1 ? std::move((*frames)[1]) : std::string();
    if (envelope->type == protocol::ErrorReply::kType) {
      auto error = protocol::DecodeBody<protocol::ErrorReply>(*envelope);
      if (!error.ok()) return error.status();
      std::string message = error->message;
      for (const auto& e : error->errors) message += "\n  " + e;
      StatusCode code = StatusCode::kInternal;
      for (StatusCode c : {StatusCode::kInvalidArgument, StatusCode::kNotFound,
                           StatusCode::kFailedPrecondition, StatusCode::kUnavailable,
                           StatusCode::kIoError, StatusCode::kAlreadyExists}) {
        if (error->code == StatusCodeName(c)) code = c;
      }
      return Status(code, message);
    }
    return envelope;
  }
  // Drop the socket so a late reply cannot be mistaken for the answer to a later request.
  Reconnect();
  return Status::Unavailable("no reply from the scheduler at " + address_ + " within " +
                             std::to_string(timeout_ms_ / 1000.0).substr(0, 3) +
                             " s: is kiln-scheduler running there? (set --scheduler or "
                             "KILN_SCHEDULER)");
}

}  // namespace kiln::cli
