// The HTTP API's route table, shared by the request codec (api_routes.cpp) and the OpenAPI
// description (api_openapi.cpp). Private to scheduler/service.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/codec.h"
#include "common/status.h"

namespace kiln::service::api {

using nlohmann::json;

enum class Kind { kBool, kInt, kNumber, kString, kStringList, kObject };
const char* KindName(Kind kind);

struct Param {
  std::string name;
  Kind kind;
  std::string description;
  bool required = false;
};

// What a route's builder gets: the path's values (by the pattern's {names}), the query and the
// body, already checked against the route's lists and converted to JSON types.
struct Bound {
  std::map<std::string, std::string> path;
  json query = json::object();
  json body = json::object();
  std::string fresh_request_id;
};

using Builder = std::function<Result<protocol::Envelope>(const Bound&)>;

struct Route {
  std::string method;
  std::string pattern;  // "/jobs/{id}/logs"; {id} is a positive integer, {step} one or "latest"
  std::string summary;
  std::vector<Param> query;
  std::vector<Param> body;  // fields of a JSON object body; empty: the route takes no body
  Builder build;
  int success_status = 200;
  bool download = false;
  std::string returns;  // what the 2xx answer holds, for the OpenAPI description
};

// Every route of /api/v1, in the order requests are matched.
const std::vector<Route>& Routes();

// A decimal int64, or nullopt (out of range included): never throws.
std::optional<int64_t> ParseInt(const std::string& text);
// `text` cut at every `sep` ("/jobs/1" by '/' is "", "jobs", "1").
std::vector<std::string> Split(const std::string& text, char sep);

}  // namespace kiln::service::api
