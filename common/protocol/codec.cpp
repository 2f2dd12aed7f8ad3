#include "common/protocol/codec.h"

#include <set>

namespace kiln::protocol {

namespace {

const std::set<std::string>& KnownTypes() {
  static const std::set<std::string> types = {
#define KILN_TYPE_NAME(M) M::kType,
      KILN_FOR_EACH_MESSAGE(KILN_TYPE_NAME)
#undef KILN_TYPE_NAME
  };
  return types;
}

}  // namespace

bool IsKnownType(const std::string& type) { return KnownTypes().count(type) > 0; }

std::string EncodeEnvelope(const Envelope& envelope) {
  json j = {{"v", envelope.version}, {"type", envelope.type}, {"id", envelope.id},
            {"body", envelope.body}};
  if (!envelope.auth.empty()) j["auth"] = envelope.auth;
  // Text from processes (log lines) may hold invalid UTF-8; it is replaced, never thrown on.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Envelope> DecodeEnvelope(const std::string& frame) {
  if (frame.size() > kMaxEnvelopeBytes) {
    return Status::InvalidArgument("envelope of " + std::to_string(frame.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(kMaxEnvelopeBytes));
  }
  if (JsonNestingDepth(frame) > kMaxJsonDepth) {
    return Status::InvalidArgument("envelope nests deeper than " + std::to_string(kMaxJsonDepth) +
                                   " levels");
  }
  json j = json::parse(frame, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("envelope is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("envelope must be a JSON object");
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) {
    return Status::InvalidArgument("envelope.v: required integer protocol version");
  }
  if (v->get<int64_t>() != kProtocolVersion) {
    return Status::InvalidArgument("envelope.v: unsupported protocol version " + v->dump() +
                                   ", this build speaks " + std::to_string(kProtocolVersion));
  }
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return Status::InvalidArgument("envelope.type: required string");
  }
  if (!IsKnownType(type->get<std::string>())) {
    return Status::InvalidArgument("envelope.type: unknown message type " + type->dump());
  }
  Envelope e;
  e.type = type->get<std::string>();
  auto id = j.find("id");
  if (id != j.end()) {
    if (!id->is_string()) return Status::InvalidArgument("envelope.id: must be a string");
    e.id = id->get<std::string>();
  }
  auto auth = j.find("auth");
  if (auth != j.end()) {
    if (!auth->is_string() || auth->get_ref<const std::string&>().size() > kMaxAuthBytes) {
      return Status::InvalidArgument("envelope.auth: must be a token string of at most " +
                                     std::to_string(kMaxAuthBytes) + " bytes");
    }
    e.auth = auth->get<std::string>();
  }
  auto body = j.find("body");
  if (body != j.end()) {
    if (!body->is_object()) return Status::InvalidArgument("envelope.body: must be an object");
    e.body = std::move(*body);
  }
  return e;
}

}  // namespace kiln::protocol
