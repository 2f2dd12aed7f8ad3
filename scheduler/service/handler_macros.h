// Shared by the scheduler's message handlers: decode a body or reply with the named error.
// Expect `req` (the Request being handled) in scope. Private to scheduler/service.
#pragma once

#define KILN_DECODE_OR_REPLY(Type, var)                         \
  auto var##_result = protocol::DecodeBody<Type>(req.envelope); \
  if (!var##_result.ok()) {                                     \
    ReplyError(req, var##_result.status());                     \
    return;                                                     \
  }                                                             \
  Type& var = *var##_result

// Declares `JobRecord var`, the job with this id, or replies NotFound naming the id.
#define KILN_JOB_OR_REPLY(job_id, var)                                             \
  auto var##_found = store_->GetJob(job_id);                                       \
  KILN_OK_OR_REPLY(var##_found);                                                   \
  if (!var##_found->has_value()) {                                                 \
    ReplyError(req, Status::NotFound("no job with id " + std::to_string(job_id))); \
    return;                                                                        \
  }                                                                                \
  JobRecord var = **var##_found

#define KILN_OK_OR_REPLY(result)        \
  if (!(result).ok()) {                 \
    ReplyError(req, (result).status()); \
    return;                             \
  }

// Replies with the refusal, and records it in the audit table, unless `check` (a Status from
// core/access_policy.h) is OK.
#define KILN_PERMIT_OR_REPLY(check, action, target)            \
  if (Status permit_status_ = (check); !permit_status_.ok()) { \
    Audit(req, action, target, permit_status_);                \
    ReplyError(req, permit_status_);                           \
    return;                                                    \
  }
