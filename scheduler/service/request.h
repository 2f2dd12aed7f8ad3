// One message as the scheduler handles it: who sent it, on which connection, and what handling
// it produced besides its reply. Each handler gets its own Request, so nothing about one message
// (its caller, its failure, its audit rows) can leak into the next one.
#pragma once

#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "scheduler/core/access_policy.h"
#include "scheduler/service/store.h"

namespace kiln::service {

struct Request {
  Request(const transport::Frames& frames_in, std::string connection_key_in)
      : frames(frames_in), connection_key(std::move(connection_key_in)) {}

  const transport::Frames& frames;  // as received: [peer][envelope][binary...]
  std::string peer;                 // the sender's ROUTER identity: replies go there
  protocol::Envelope envelope;      // decoded from frames[1]
  std::string connection_key;       // the CURVE public key of the connection ("" if none)
  core::Caller caller;              // who sent it, once authenticated
  bool failed = false;              // answered with an error: its writes are undone
  bool known_type = false;          // its type is one the scheduler accepts
  std::vector<AuditRecord> audit;   // its audit rows, written when it ends
};

}  // namespace kiln::service
