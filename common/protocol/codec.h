// The wire format. A message is a list of frames: [envelope JSON][optional binary frames].
// The envelope is {"v":1,"type":T,"id":ID,"body":{...}} plus, on client requests, "auth": the
// user's token (the connection is CURVE-encrypted; the token is never logged). Decoding never throws: malformed JSON,
// an unknown version or type, and missing or mistyped fields each give a Status naming the problem.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/field_visitors.h"
#include "common/protocol/messages.h"
#include "common/status.h"

namespace kiln::protocol {

constexpr int kProtocolVersion = 1;
constexpr size_t kMaxEnvelopeBytes = 4 << 20;  // specs, log batches and views stay far below this
constexpr size_t kMaxAuthBytes = 256;

using Frames = std::vector<std::string>;

struct Envelope {
  int version = kProtocolVersion;
  std::string type;
  std::string id;  // request id; replies carry the id of the request they answer
  json body = json::object();
  std::string auth;  // client requests: the user's access token

};

bool IsKnownType(const std::string& type);

std::string EncodeEnvelope(const Envelope& envelope);
Result<Envelope> DecodeEnvelope(const std::string& frame);

template <typename M>
json BodyOf(const M& message) {
  return FieldEncoder::Encode(message);
}

template <typename M>
Envelope MakeEnvelope(const M& message, std::string id = "") {
  Envelope e;
  e.type = M::kType;
  e.id = std::move(id);
  e.body = BodyOf(message);
  return e;
}

// Encodes message into frame 0 and appends `binary` frames.
template <typename M>
Frames Encode(const M& message, const std::string& id = "", Frames binary = {}) {
  Frames frames;
  frames.reserve(1 + binary.size());
  frames.push_back(EncodeEnvelope(MakeEnvelope(message, id)));
  for (auto& b : binary) frames.push_back(std::move(b));
  return frames;
}

// Typed body of an envelope already known to carry M::kType. Errors name every bad field.
template <typename M>
Result<M> DecodeBody(const Envelope& envelope) {
  if (envelope.type != M::kType) {
    return Status::InvalidArgument("expected message type \"" + std::string(M::kType) +
                                   "\", got \"" + envelope.type + "\"");
  }
  M message;
  std::vector<FieldError> errors;
  FieldDecoder decoder{&envelope.body, "body", &errors};
  message.Fields(decoder);
  if (!errors.empty()) {
    std::string text = std::string("malformed \"") + M::kType + "\" message: ";
    for (size_t i = 0; i < errors.size(); ++i) text += (i ? "; " : "") + errors[i].ToString();
    return Status::InvalidArgument(text);
  }
  return message;
}

}  // namespace kiln::protocol
