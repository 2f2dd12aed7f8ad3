#include "scheduler/service/api_routes.h"

#include <cstdint>

#include "common/json_fields.h"
#include "scheduler/service/api_route_table.h"

namespace kiln::service {

using nlohmann::json;
using protocol::Envelope;
using namespace api;

namespace {

// Matches `path` against `pattern`; fills `values` and returns "" on a match, "no" when the
// shapes differ, or the error for a value of the right shape but a bad form (a job id of "x").
std::string MatchPath(const std::string& pattern, const std::string& path,
                      std::map<std::string, std::string>* values) {
  const auto want = Split(pattern, '/');
  const auto got = Split(path, '/');
  if (want.size() != got.size()) return "no";
  std::string problem;
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string& w = want[i];
    if (w.size() > 2 && w.front() == '{') {
      const std::string name = w.substr(1, w.size() - 2);
      const std::string& v = got[i];
      if (v.empty()) return "no";
      if (name == "id") {
        auto n = ParseInt(v);
        if (!n || *n <= 0) problem = "path: the job id must be a positive integer, got \"" + v + "\"";
      } else if (name == "step") {
        auto n = ParseInt(v);
        if (v != "latest" && (!n || *n < 0)) {
          problem = "path: the step must be a number or \"latest\", got \"" + v + "\"";
        }
      }
      (*values)[name] = v;
    } else if (w != got[i]) {
      return "no";
    }
  }
  return problem;
}

// Converts one query value to the param's JSON type, or says what is wrong.
Result<json> QueryValue(const Param& p, const std::string& text) {
  switch (p.kind) {
    case Kind::kBool:
      if (text == "true" || text == "1" || text.empty()) return json(true);
      if (text == "false" || text == "0") return json(false);
      return Status::InvalidArgument(p.name + ": expected true or false, got \"" + text + "\"");
    case Kind::kInt: {
      auto n = ParseInt(text);
      if (!n) return Status::InvalidArgument(p.name + ": expected an integer, got \"" + text + "\"");
      return json(*n);
    }
    case Kind::kStringList: {
      json list = json::array();
      for (const auto& item : Split(text, ',')) {
        if (!item.empty()) list.push_back(item);
      }
      return list;
    }
    default:
      return json(text);
  }
}

bool HasKind(const json& value, Kind kind) {
  switch (kind) {
    case Kind::kBool: return value.is_boolean();
    case Kind::kInt:  // what fits an int64: larger unsigned values would wrap
      return value.is_number_integer() &&
             !(value.is_number_unsigned() &&
               value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX));
    case Kind::kNumber:
      return value.is_number();
    case Kind::kString: return value.is_string();
    case Kind::kObject: return value.is_object();
    case Kind::kStringList: return value.is_array();
  }
  return false;
}

std::string Known(const std::vector<Param>& params) {
  std::string out;
  for (const auto& p : params) out += (out.empty() ? "" : ", ") + p.name;
  return out.empty() ? "none" : out;
}

// Checks the query and body against the route; fills `bound`, or returns the field errors.
std::vector<std::string> Bind(const Route& route, const ApiRequest& request, Bound* bound) {
  std::vector<std::string> errors;
  for (const auto& [name, value] : request.query) {
    const Param* param = nullptr;
    for (const auto& p : route.query) {
      if (p.name == name) param = &p;
    }
    if (param == nullptr) {
      errors.push_back("query parameter \"" + name + "\" is not known on " + route.method + " " +
                       route.pattern + " (known: " + Known(route.query) + ")");
      continue;
    }
    if (request.query.count(name) > 1) {
      errors.push_back(name + ": given more than once; give it once");
      continue;
    }
    auto v = QueryValue(*param, value);
    if (!v.ok()) {
      errors.push_back(v.status().message());
      continue;
    }
    bound->query[name] = *v;
  }
  if (route.body.empty()) {
    // Bodies are ignored where a route takes none, as HTTP clients send "{}" or nothing alike.
    return errors;
  }
  const std::string& text = request.body;
  const bool blank = text.find_first_not_of(" \t\r\n") == std::string::npos;
  if (!blank && JsonNestingDepth(text) > kMaxJsonDepth) {
    errors.push_back("body: nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return errors;
  }
  json body = blank ? json::object() : json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    errors.push_back("body: expected a JSON object (Content-Type: application/json)" +
                     std::string(body.is_discarded() ? ", and it does not parse as JSON" : ""));
    return errors;
  }
  for (const auto& [name, value] : body.items()) {
    const Param* field = nullptr;
    for (const auto& p : route.body) {
      if (p.name == name) field = &p;
    }
    if (field == nullptr) {
      errors.push_back("body." + name + ": not a field of " + route.method + " " + route.pattern +
                       " (fields: " + Known(route.body) + ")");
    } else if (!HasKind(value, field->kind)) {
      errors.push_back("body." + name + ": expected " + (field->kind == Kind::kObject || field->kind == Kind::kInt ? "an " : "a ") +
                       KindName(field->kind) + ", got " + value.type_name());
    }
  }
  for (const auto& p : route.body) {
    if (p.required && !body.contains(p.name)) {
      errors.push_back("body." + p.name + ": missing; it is required (" + p.description + ")");
    }
  }
  bound->body = std::move(body);
  return errors;
}

}  // namespace

ApiResponse ApiError(const Status& status, std::vector<std::string> errors) {
  return {HttpStatusOf(status.code()),
          {{"error",
            {{"code", StatusCodeName(status.code())},
             {"message", status.message()},
             {"errors", std::move(errors)}}}}};
}

std::variant<ApiCall, ApiResponse> TranslateApiRequest(const ApiRequest& request) {
  std::vector<std::string> methods;
  for (const Route& route : Routes()) {
    std::map<std::string, std::string> values;
    const std::string match = MatchPath(route.pattern, request.path, &values);
    if (match == "no") continue;
    if (route.method != request.method) {
      methods.push_back(route.method);
      continue;
    }
    if (!match.empty()) return ApiError(Status::InvalidArgument(match), {match});
    if (request.token.empty()) {
      return ApiError(Status::Unauthenticated(
          "no token: send the header \"Authorization: Bearer TOKEN\" with your kiln token (the "
          "one `kiln login` took; an admin makes one with kiln-scheduler user add NAME)"));
    }
    if (request.token.size() > protocol::kMaxAuthBytes) {
      return ApiError(Status::Unauthenticated("the bearer token is too long to be a kiln token"));
    }
    Bound bound;
    bound.path = values;
    bound.fresh_request_id = request.fresh_request_id;
    auto errors = Bind(route, request, &bound);
    if (!errors.empty()) {
      std::string message = "bad request to " + route.method + " " + kApiPrefix + route.pattern;
      for (const auto& e : errors) message += "; " + e;
      return ApiError(Status::InvalidArgument(message), errors);
    }
    auto envelope = route.build(bound);
    if (!envelope.ok()) {
      return ApiError(envelope.status(), {envelope.status().message()});
    }
    envelope->auth = request.token;
    return ApiCall{std::move(*envelope), route.success_status, route.download};
  }
  if (!methods.empty()) {
    std::string allowed;
    for (const auto& m : methods) allowed += (allowed.empty() ? "" : ", ") + m;
    ApiResponse r = ApiError(Status::InvalidArgument(request.method + " is not allowed on " +
                                                     kApiPrefix + request.path +
                                                     "; allowed: " + allowed));
    r.status = 405;
    return r;
  }
  return ApiError(Status::NotFound("no API route " + request.method + " " + kApiPrefix +
                                   request.path + "; the routes are listed at " + kApiPrefix +
                                   "/openapi.json"));
}

ApiResponse TranslateApiReply(const ApiCall& call, const Envelope& reply) {
  if (reply.type == protocol::ErrorReply::kType) {
    auto error = protocol::DecodeBody<protocol::ErrorReply>(reply);
    if (!error.ok()) return ApiError(Status::Internal(error.status().message()));
    return ApiError(Status(StatusCodeFromName(error->code), error->message), error->errors);
  }
  if (reply.type == protocol::DataReply::kType) {
    return {call.success_status, reply.body.contains("data") ? reply.body["data"] : json()};
  }
  ApiResponse r{call.success_status, reply.body};
  if (reply.type == protocol::SubmitReply::kType && reply.body.value("duplicate", false)) {
    r.status = 200;  // the job the same request_id made before
  }
  if (r.body.is_object() && r.body.contains("warning") && r.body["warning"].is_null()) {
    r.body.erase("warning");
  }
  return r;
}

}  // namespace kiln::service
