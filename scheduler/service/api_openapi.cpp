// The OpenAPI 3.0 description of /api/v1, generated from the route table that serves it.
#include "scheduler/service/api_route_table.h"
#include "scheduler/service/api_routes.h"

namespace kiln::service {

using nlohmann::json;
using namespace api;

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
             {"schema",
              {{"type",
                name == "node" || name == "step" || name == "name" ? "string" : "integer"}}}});
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
