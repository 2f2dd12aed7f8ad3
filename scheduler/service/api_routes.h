// The HTTP API's codec (/api/v1): turns an HTTP request into the protocol request the CLI would
// send (same message, same token, so exactly the CLI's access rules apply in the scheduler), and
// the scheduler's reply into an HTTP status and the JSON `kiln ... --json` prints. Pure: no I/O,
// no clock; the server (http_server.cpp) does the forwarding. The route table is also the source
// of the OpenAPI description, so the two cannot drift apart.
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/codec.h"
#include "common/status.h"

namespace kiln::service {

constexpr const char* kApiPrefix = "/api/v1";
constexpr size_t kMaxApiBodyBytes = 1 << 20;

struct ApiRequest {
  std::string method;  // GET, POST, DELETE
  std::string path;    // below kApiPrefix, e.g. "/jobs/12/logs"
  std::multimap<std::string, std::string> query;
  std::string body;
  std::string token;  // from "Authorization: Bearer TOKEN"; empty when none was sent
  std::string fresh_request_id;  // a new random id, for a submit whose body names none
};

struct ApiResponse {
  int status = 200;
  nlohmann::json body;
};

// A request to forward to the scheduler. `download`: the request is a ckpt_read at offset 0 whose
// reply starts a file download (the server reads the rest in chunks) rather than a JSON answer.
struct ApiCall {
  protocol::Envelope request;  // auth set from the bearer token
  int success_status = 200;
  bool download = false;
};

// Either the call to make or, for bad input (unknown path or method, a malformed parameter or
// body, no token), the answer to give at once.
std::variant<ApiCall, ApiResponse> TranslateApiRequest(const ApiRequest& request);

// The answer to `call` given the scheduler's reply: the reply's data as --json shows it, or
// {"error": {"code", "message", "errors"}} with the status its code maps to.
ApiResponse TranslateApiReply(const ApiCall& call, const protocol::Envelope& reply);

// {"error": {...}} with the HTTP status that `status`'s code maps to.
ApiResponse ApiError(const Status& status, std::vector<std::string> errors = {});

// The OpenAPI 3.0 description of every route (served at /api/v1/openapi.json).
nlohmann::json OpenApiDocument();

}  // namespace kiln::service
