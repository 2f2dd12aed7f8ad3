// Shared by the scheduler's message handlers: decode a body or reply with the named error.
// Expect `peer` and `e` (the envelope) in scope. Private to scheduler/service.
#pragma once

#define KILN_DECODE_OR_REPLY(Type, var)                 \
  auto var##_result = protocol::DecodeBody<Type>(e);    \
  if (!var##_result.ok()) {                             \
    ReplyError(peer, e.id, var##_result.status());      \
    return;                                             \
  }                                                     \
  Type& var = *var##_result

#define KILN_OK_OR_REPLY(result)                        \
  if (!(result).ok()) {                                 \
    ReplyError(peer, e.id, (result).status());          \
    return;                                             \
  }

