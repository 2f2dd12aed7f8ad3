#include "scheduler/service/api_routes.h"

#include <charconv>
#include <cstdint>
#include <functional>

#include "common/json_fields.h"

namespace kiln::service {

using nlohmann::json;
using protocol::Envelope;

namespace {

enum class Kind { kBool, kInt, kString, kStringList, kObject };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kBool: return "boolean";
    case Kind::kInt: return "integer";
    case Kind::kString: return "string";
    case Kind::kStringList: return "string";  // comma-separated in a query
    case Kind::kObject: return "object";
  }
  return "string";
}

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

using Builder = std::function<Result<Envelope>(const Bound&)>;

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

// A decimal int64, or nullopt (out of range included): never throws.
std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// A path value MatchPath has checked ({id}, or {step} other than "latest").
int64_t PathInt(const Bound& b, const std::string& name) {
  return ParseInt(b.path.at(name)).value_or(0);
}

template <typename M>
Result<Envelope> Make(const M& message) {
  return protocol::MakeEnvelope(message);
}

std::optional<int64_t> OptInt(const json& j, const char* name) {
  if (!j.contains(name)) return std::nullopt;
  return j[name].get<int64_t>();
}

const std::vector<Route>& Routes() {
  static const std::vector<Route> routes = {
      {"GET",
       "/whoami",
       "The user the token belongs to",
       {},
       {},
       [](const Bound&) { return Make(protocol::WhoAmIRequest{}); },
       200,
       false,
       "{\"user\": NAME, \"admin\": BOOL}"},
      {"GET",
       "/jobs",
       "List jobs (kiln queue --json), one page at a time",
       {{"all", Kind::kBool, "include finished jobs"},
        {"user", Kind::kString, "only this user's jobs"},
        {"state", Kind::kStringList,
         "only jobs in these states, comma-separated (PENDING,RUNNING,...); finished states "
         "named here are listed without all"},
        {"limit", Kind::kInt, "at most this many jobs (1 to 1000, default 1000)"},
        {"after_id", Kind::kInt, "jobs with a larger id: the previous page's next_after_id"}},
       {},
       [](const Bound& b) -> Result<Envelope> {
         protocol::QueueRequest r;
         r.all = b.query.value("all", false);
         r.limit = b.query.value("limit", int64_t{1000});
         if (*r.limit < 1 || *r.limit > 1000) {
           return Status::InvalidArgument("limit: must be between 1 and 1000, got " +
                                          std::to_string(*r.limit));
         }
         r.after_id = OptInt(b.query, "after_id");
         if (b.query.contains("user")) r.user = b.query["user"].get<std::string>();
         if (b.query.contains("state")) {
           r.states.emplace();
           for (std::string s : b.query["state"]) {
             for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
             r.states->push_back(s);
           }
           r.all = true;
         }
         return Make(r);
       },
       200,
       false,
       "{\"jobs\": [JOB...], \"next_after_id\": ID or null}"},
      {"POST",
       "/jobs",
       "Submit a job (kiln submit)",
       {},
       {{"spec", Kind::kObject, "the job spec (docs/job-spec.md)", true},
        {"hold", Kind::kBool, "queue it held: it waits until released"},
        {"request_id", Kind::kString,
         "a client-made id: a retried submit with the same id returns the same job"},
        {"resume_from_job", Kind::kInt, "start from a checkpoint of this job"},
        {"resume_from_step", Kind::kInt, "that job's checkpoint at this step (default latest)"},
        {"user", Kind::kString, "submit as this user (admins only)"}},
       [](const Bound& b) -> Result<Envelope> {
         protocol::SubmitRequest r;
         r.spec = b.body["spec"];
         r.hold = b.body.value("hold", false);
         r.request_id = b.body.value("request_id", std::string());
         if (r.request_id.empty()) r.request_id = b.fresh_request_id;
         r.resume_from_job = OptInt(b.body, "resume_from_job");
         r.resume_from_step = OptInt(b.body, "resume_from_step");
         r.user = b.body.value("user", std::string());
         return Make(r);
       },
       201,
       false,
       "{\"job_id\": ID, \"duplicate\": BOOL, \"warning\": TEXT (when it cannot start now)}"},
      {"GET",
       "/jobs/{id}",
       "One job (kiln show --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::ShowRequest{PathInt(b, "id")}); },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/cancel",
       "Cancel a job (kiln cancel)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::CancelRequest{PathInt(b, "id")}); },
       200,
       false,
       "{\"job_id\": ID, \"state\": STATE}"},
      {"POST",
       "/jobs/{id}/hold",
       "Hold a pending job (kiln hold)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "hold", 0});
       },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/release",
       "Release a held job (kiln release)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "release", 0});
       },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/priority",
       "Set a job's priority (kiln priority; raising it: admins)",
       {},
       {{"priority", Kind::kInt, "the new priority", true}},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "priority",
                                               b.body["priority"].get<int64_t>()});
       },
       200,
       false,
       "JOB"},
      {"GET",
       "/jobs/{id}/logs",
       "A page of a job's output (kiln logs --json)",
       {{"after_seq", Kind::kInt, "lines after this seq: the previous page's next_after_seq"},
        {"limit", Kind::kInt, "at most this many lines (1 to 5000, default 1000)"},
        {"attempt", Kind::kInt, "only this attempt's lines"},
        {"rank", Kind::kInt, "only lines of this rank"},
        {"tail", Kind::kInt, "start at the tail-th last line"},
        {"since_ms", Kind::kInt, "only lines stored at or after this time (ms since 1970)"}},
       {},
       [](const Bound& b) -> Result<Envelope> {
         protocol::LogsRequest r;
         r.job_id = PathInt(b, "id");
         r.after_seq = b.query.value("after_seq", int64_t{0});
         r.limit = b.query.value("limit", int64_t{1000});
         if (r.limit < 1 || r.limit > 5000) {
           return Status::InvalidArgument("limit: must be between 1 and 5000, got " +
                                          std::to_string(r.limit));
         }
         r.attempt = OptInt(b.query, "attempt");
         r.rank = OptInt(b.query, "rank");
         r.tail = OptInt(b.query, "tail");
         r.since_ms = OptInt(b.query, "since_ms");
         return Make(r);
       },
       200,
       false,
       "{\"lines\": [{\"seq\", \"attempt\", \"time\", \"line\"}...], \"next_after_seq\": SEQ, "
       "\"more\": BOOL, \"finished\": BOOL}"},
      {"GET",
       "/jobs/{id}/metrics",
       "A job's metrics history: its step reports and epoch reports, downsampled to at most "
       "about 400 points each (kiln metrics --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::MetricsHistoryRequest{PathInt(b, "id")}); },
       200,
       false,
       "{\"job_id\", \"step\": [{\"time\", \"attempt\", \"step\", \"loss\", ...}], "
       "\"epoch\": [{\"time\", \"attempt\", \"epoch\", \"test_accuracy\", ...}]}"},
      {"GET",
       "/jobs/{id}/checkpoints",
       "A job's checkpoints (kiln ckpt ls --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::CheckpointsRequest{PathInt(b, "id")}); },
       200,
       false,
       "[CHECKPOINT...]"},
      {"GET",
       "/jobs/{id}/checkpoints/{step}",
       "Download a checkpoint's bytes ({step}: a step or \"latest\"); the X-Checkpoint-Sha256 "
       "header carries its sha256",
       {},
       {},
       [](const Bound& b) {
         const std::string& step = b.path.at("step");
         return Make(protocol::CheckpointRead{
             PathInt(b, "id"), step == "latest" ? -1 : PathInt(b, "step"), 0, 8 << 20});
       },
       200,
       true,
       "the file (application/octet-stream)"},
      {"DELETE",
       "/jobs/{id}/checkpoints/{step}",
       "Delete a checkpoint (kiln ckpt rm)",
       {},
       {},
       [](const Bound& b) -> Result<Envelope> {
         const std::string& step = b.path.at("step");
         if (step == "latest") {
           return Status::InvalidArgument("step: name the step to delete, not \"latest\"");
         }
         return Make(protocol::CheckpointRemove{PathInt(b, "id"), PathInt(b, "step")});
       },
       200,
       false,
       "{\"removed\": BOOL} (false: there was no such checkpoint)"},
      {"GET",
       "/nodes",
       "The nodes (kiln nodes --json)",
       {},
       {},
       [](const Bound&) { return Make(protocol::NodesRequest{}); },
       200,
       false,
       "[NODE...]"},
      {"POST",
       "/nodes/{node}/drain",
       "Drain a node (admins; kiln node drain)",
       {},
       {{"reason", Kind::kString, "why, shown with the node"},
        {"requeue", Kind::kBool,
         "stop the jobs running there now; they checkpoint and wait to resume elsewhere"}},
       [](const Bound& b) {
         return Make(protocol::NodeAdminRequest{
             b.path.at("node"), b.body.value("requeue", false) ? "drain_requeue" : "drain",
             b.body.value("reason", std::string())});
       },
       200,
       false,
       "NODE"},
      {"POST",
       "/nodes/{node}/resume",
       "Resume a drained node (admins; kiln node resume)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::NodeAdminRequest{b.path.at("node"), "resume", ""});
       },
       200,
       false,
       "NODE"},
  };
  return routes;
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = text.find(sep, start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

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

int HttpStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: return 409;
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kIoError:
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

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

json OpenApiDocument() {
  json paths = json::object();
  for (const Route& route : Routes()) {
    json op = {{"summary", route.summary}, {"parameters", json::array()}};
    for (const std::string& segment : Split(route.pattern, '/')) {
      if (segment.size() > 2 && segment.front() == '{') {
        const std::string name = segment.substr(1, segment.size() - 2);
        op["parameters"].push_back(
            {{"name", name},
             {"in", "path"},
             {"required", true},
             {"schema", {{"type", name == "node" || name == "step" ? "string" : "integer"}}}});
      }
    }
    for (const auto& p : route.query) {
      json schema = {{"type", KindName(p.kind)}};
      op["parameters"].push_back(
          {{"name", p.name}, {"in", "query"}, {"description", p.description}, {"schema", schema}});
    }
    if (!route.body.empty()) {
      json props = json::object();
      json required = json::array();
      for (const auto& p : route.body) {
        props[p.name] = {{"type", KindName(p.kind)}, {"description", p.description}};
        if (p.required) required.push_back(p.name);
      }
      json schema = {{"type", "object"}, {"properties", props}, {"additionalProperties", false}};
      if (!required.empty()) schema["required"] = required;
      op["requestBody"] = {{"required", !required.empty()},
                           {"content", {{"application/json", {{"schema", schema}}}}}};
    }
    const std::string ok = std::to_string(route.success_status);
    op["responses"] = {
        {ok,
         {{"description", route.returns},
          {"content",
           {{route.download ? "application/octet-stream" : "application/json", json::object()}}}}},
        {"default",
         {{"description",
           "{\"error\": {\"code\", \"message\", \"errors\": [one per field]}}: 400 bad input, "
           "401 no or unknown token, 403 not allowed, 404 not found, 409 conflict, 503 "
           "unavailable (or read-only: the scheduler cannot save changes now)"}}}};
    std::string method = route.method;
    for (auto& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    paths[route.pattern][method] = op;
  }
  return {{"openapi", "3.0.3"},
          {"info",
           {{"title", "kiln scheduler API"},
            {"version", "1"},
            {"description",
             "What the kiln CLI does, over HTTP: the same requests, the same access rules, the "
             "same JSON as --json. Authenticate with \"Authorization: Bearer TOKEN\" (a kiln "
             "token). See docs/api.md."}}},
          {"servers", {{{"url", kApiPrefix}}}},
          {"components",
           {{"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
          {"security", {{{"bearer", json::array()}}}},
          {"paths", paths}};
}

}  // namespace kiln::service
