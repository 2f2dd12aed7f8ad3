// How the scheduler's messages come and go. SchedulerService talks only to this interface: the
// daemon uses ZmqServiceTransport (a CURVE ROUTER socket and its ZAP handler), tests use an
// in-memory one (tests/scheduler/service_harness.h), so that the service runs without sockets,
// threads or processes, on a fake clock.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "common/transport/socket.h"
#include "common/transport/zap_server.h"

namespace kiln::service {

// Decides whether a new connection may talk to the scheduler, and labels its messages.
using ConnectionDecider = std::function<transport::ZapVerdict(const transport::ZapRequest&)>;

class ServiceTransport {
 public:
  virtual ~ServiceTransport() = default;
  // Where clients reach the scheduler (written to <state_dir>/endpoint).
  virtual const std::string& endpoint() const = 0;
  // Waits at most wait_ms for a message; answers connection requests on the way with `decide`.
  virtual void Wait(int wait_ms, const ConnectionDecider& decide) = 0;
  // The next message, [peer][envelope][binary...], and the label of its connection
  // ("curve:KEY", see core/access_policy.h); nullopt when none is waiting.
  virtual std::optional<transport::Frames> Receive(std::string* connection) = 0;
  // Sends [peer][envelope][binary...] without blocking; a message to a peer that is gone is
  // dropped (the protocol resends what matters). What a peer does not take at once waits, up to
  // a budget (outbound_queues.h); `to_worker`: the peer is an admitted worker, whose larger
  // budget is its own and who is never cut off for the total.
  virtual Status Send(const transport::Frames& frames, bool to_worker) = 0;
  // Bytes of replies waiting for peers that have not taken them (0 where nothing is queued).
  virtual int64_t WaitingBytes() const { return 0; }
};

// The daemon's transport: a ROUTER socket serving CURVE with the scheduler's keys, bound to
// `listen`, each connection checked by a ZAP handler on the same context.
Result<std::unique_ptr<ServiceTransport>> BindZmqTransport(transport::Context& context,
                                                           const transport::CurveKeyPair& keys,
                                                           const std::string& listen);

}  // namespace kiln::service
