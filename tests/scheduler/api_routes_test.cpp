// The HTTP API's codec on its own: which protocol request each route makes, and the errors for
// bad paths, parameters and bodies (api_routes.h).
#include "scheduler/service/api_routes.h"

#include <catch2/catch.hpp>

using kiln::service::ApiCall;
using kiln::service::ApiRequest;
using kiln::service::ApiResponse;
using kiln::service::TranslateApiReply;
using kiln::service::TranslateApiRequest;
using nlohmann::json;

namespace {

ApiRequest Req(const std::string& method, const std::string& path, std::string body = "") {
  ApiRequest r;
  r.method = method;
  r.path = path;
  r.body = std::move(body);
  r.token = "kiln_token";
  r.fresh_request_id = "fresh-1";
  return r;
}

ApiCall CallOf(const ApiRequest& r) {
  auto t = TranslateApiRequest(r);
  if (auto* a = std::get_if<ApiResponse>(&t)) FAIL(a->body.dump());
  return std::get<ApiCall>(t);
}

ApiResponse AnswerOf(const ApiRequest& r) {
  auto t = TranslateApiRequest(r);
  REQUIRE(std::holds_alternative<ApiResponse>(t));
  return std::get<ApiResponse>(t);
}

}  // namespace

TEST_CASE("API routes make the CLI's requests, with the bearer token as the envelope's auth") {
  ApiCall show = CallOf(Req("GET", "/jobs/42"));
  CHECK(show.request.type == "show");
  CHECK(show.request.body["job_id"] == 42);
  CHECK(show.request.auth == "kiln_token");

  ApiRequest list = Req("GET", "/jobs");
  list.query = {{"state", "running,pending"}, {"limit", "5"}, {"user", "bob"}};
  ApiCall queue = CallOf(list);
  CHECK(queue.request.type == "queue");
  CHECK(queue.request.body["states"] == json({"RUNNING", "PENDING"}));
  CHECK(queue.request.body["limit"] == 5);
  CHECK(queue.request.body["all"] == true);
  CHECK(queue.request.body["user"] == "bob");

  ApiCall submit = CallOf(Req("POST", "/jobs", R"({"spec": {"name": "x"}, "hold": true})"));
  CHECK(submit.request.type == "submit");
  CHECK(submit.request.body["request_id"] == "fresh-1");
  CHECK(submit.request.body["hold"] == true);
  CHECK(submit.success_status == 201);

  ApiCall drain = CallOf(Req("POST", "/nodes/n1/drain", R"({"requeue": true, "reason": "disk"})"));
  CHECK(drain.request.type == "node_admin");
  CHECK(drain.request.body["action"] == "drain_requeue");
  CHECK(drain.request.body["node"] == "n1");

  ApiCall download = CallOf(Req("GET", "/jobs/3/checkpoints/latest"));
  CHECK(download.download);
  CHECK(download.request.type == "ckpt_read");
  CHECK(download.request.body["step"] == -1);
  CHECK(CallOf(Req("DELETE", "/jobs/3/checkpoints/40")).request.body["step"] == 40);
}

TEST_CASE("API input errors name the path part, parameter or body field, and its fix") {
  CHECK(AnswerOf(Req("GET", "/jobs/0")).status == 400);
  CHECK(AnswerOf(Req("GET", "/jobs/-3")).status == 400);
  CHECK(AnswerOf(Req("GET", "/jobs/3/checkpoints/x")).status == 400);
  CHECK(AnswerOf(Req("GET", "/no/such/route")).status == 404);
  // Past int64 is a bad value, never an exception or a wrapped number.
  CHECK(AnswerOf(Req("GET", "/jobs/9999999999999999999")).status == 400);
  CHECK(AnswerOf(Req("GET", "/jobs/1/checkpoints/99999999999999999999999")).status == 400);
  ApiRequest huge_limit = Req("GET", "/jobs");
  huge_limit.query = {{"limit", "9223372036854775808"}};
  CHECK(AnswerOf(huge_limit).status == 400);
  CHECK(AnswerOf(Req("POST", "/jobs/1/priority", R"({"priority": 18446744073709551615})")).status ==
        400);
  CHECK(CallOf(Req("POST", "/jobs/1/priority", R"({"priority": -5})")).request.body["priority"] ==
        -5);
  CHECK(AnswerOf(Req("PUT", "/jobs")).status == 405);
  ApiRequest no_token = Req("GET", "/jobs");
  no_token.token.clear();
  CHECK(AnswerOf(no_token).status == 401);

  ApiRequest twice = Req("GET", "/jobs/1/logs");
  twice.query = {{"limit", "1"}, {"limit", "2"}};
  CHECK(AnswerOf(twice).body["error"]["errors"][0] == "limit: given more than once; give it once");
  ApiRequest range = Req("GET", "/jobs/1/logs");
  range.query = {{"limit", "0"}};
  CHECK(AnswerOf(range).body["error"]["message"] == "limit: must be between 1 and 5000, got 0");
  ApiRequest flag = Req("GET", "/jobs");
  flag.query = {{"all", "maybe"}};
  CHECK(AnswerOf(flag).body["error"]["errors"][0] == "all: expected true or false, got \"maybe\"");

  json errors = AnswerOf(Req("POST", "/jobs", R"({"spec": 3, "hold": "yes"})")).body["error"]["errors"];
  CHECK(errors.size() == 2);
  CHECK(errors[0] == "body.hold: expected a boolean, got string");
  CHECK(errors[1] == "body.spec: expected an object, got number");
  CHECK(AnswerOf(Req("POST", "/jobs", "[1]")).status == 400);
  CHECK(AnswerOf(Req("POST", "/jobs", std::string(200, '[') + std::string(200, ']'))).status ==
        400);
  CHECK(AnswerOf(Req("POST", "/jobs/1/priority", "")).body["error"]["errors"][0] ==
        "body.priority: missing; it is required (the new priority)");
}

TEST_CASE("API replies: data as --json shows it, errors with their HTTP status") {
  ApiCall show = CallOf(Req("GET", "/jobs/42"));
  kiln::protocol::Envelope data;
  data.type = "data";
  data.body = {{"data", {{"id", 42}, {"state", "RUNNING"}}}};
  ApiResponse ok = TranslateApiReply(show, data);
  CHECK(ok.status == 200);
  CHECK(ok.body == json({{"id", 42}, {"state", "RUNNING"}}));

  kiln::protocol::Envelope error;
  error.type = "error";
  error.body = {{"code", "PERMISSION_DENIED"}, {"message", "job 42 belongs to bob"},
                {"errors", json::array()}};
  ApiResponse refused = TranslateApiReply(show, error);
  CHECK(refused.status == 403);
  CHECK(refused.body["error"]["message"] == "job 42 belongs to bob");

  ApiCall submit = CallOf(Req("POST", "/jobs", R"({"spec": {}})"));
  kiln::protocol::Envelope dup;
  dup.type = "submit_reply";
  dup.body = {{"job_id", 7}, {"duplicate", true}, {"warning", nullptr}};
  ApiResponse again = TranslateApiReply(submit, dup);
  CHECK(again.status == 200);
  CHECK(!again.body.contains("warning"));
}

TEST_CASE("the OpenAPI description has one operation per route, each with its path parameters") {
  json doc = kiln::service::OpenApiDocument();
  int operations = 0;
  for (const auto& [path, methods] : doc["paths"].items()) {
    for (const auto& [method, op] : methods.items()) {
      ++operations;
      size_t braces = std::count(path.begin(), path.end(), '{');
      size_t in_path = 0;
      for (const auto& p : op["parameters"]) in_path += p["in"] == "path";
      INFO(method << " " << path);
      CHECK(in_path == braces);
      CHECK(op["responses"].contains("default"));
    }
  }
  CHECK(operations >= 15);
}

TEST_CASE("API service routes make the CLI's deploy, update, undeploy, list and grant requests") {
  ApiCall deploy = CallOf(Req("POST", "/services",
                              R"({"name": "clf", "job_id": 7, "replicas": 2, "max_delay_ms": 1.5,
                                  "memory_per_replica": "2G"})"));
  CHECK(deploy.request.type == "deploy");
  CHECK(deploy.request.body["name"] == "clf");
  CHECK(deploy.request.body["job_id"] == 7);
  CHECK(deploy.request.body["replicas"] == 2);
  CHECK(deploy.request.body["max_delay_ms"] == 1.5);
  CHECK(deploy.request.body["memory_per_replica"] == "2G");
  CHECK(deploy.request.body["update"] == false);
  CHECK_FALSE(deploy.request.body.contains("step"));
  CHECK(deploy.success_status == 201);
  ApiCall update = CallOf(Req("POST", "/services/clf/update", R"({"job_id": 9, "step": 300})"));
  CHECK(update.request.type == "deploy");
  CHECK(update.request.body["update"] == true);
  CHECK(update.request.body["name"] == "clf");
  CHECK(update.request.body["step"] == 300);
  CHECK(CallOf(Req("DELETE", "/services/clf")).request.type == "undeploy");
  CHECK(CallOf(Req("GET", "/services")).request.type == "services");
  ApiCall one = CallOf(Req("GET", "/services/clf"));
  CHECK(one.request.body["name"] == "clf");
  ApiCall grant = CallOf(Req("POST", "/services/clf/grant", R"({"user": "bob"})"));
  CHECK(grant.request.type == "service_grant");
  CHECK(grant.request.body["revoke"] == false);
  CHECK(CallOf(Req("POST", "/services/clf/revoke", R"({"user": "bob"})")).request.body["revoke"] ==
        true);
  // Fields named and typed as for any route.
  ApiResponse no_job = AnswerOf(Req("POST", "/services", R"({"name": "clf"})"));
  CHECK(no_job.status == 400);
  CHECK_THAT(no_job.body.dump(), Catch::Contains("job_id"));
  ApiResponse bad_delay =
      AnswerOf(Req("POST", "/services", R"({"name": "clf", "job_id": 7, "max_delay_ms": "2"})"));
  CHECK(bad_delay.status == 400);
  CHECK_THAT(bad_delay.body.dump(), Catch::Contains("max_delay_ms"));
}
