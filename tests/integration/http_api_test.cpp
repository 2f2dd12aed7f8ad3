// The scheduler's HTTP API (/api/v1) end to end over real sockets: a real kiln-scheduler with
// --http, a real worker, requests from cpp-httplib's client. Every route answers what the CLI's
// --json prints, under the CLI's access rules, and bad input gets a JSON error naming the field.
#include <httplib.h>

#include <catch2/catch.hpp>

#include "common/file_util.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

struct Answer {
  int status = 0;
  json body;
  std::string raw;
  httplib::Headers headers;
};

class Api {
 public:
  Api(const std::string& url, std::string token) : client_(url), token_(std::move(token)) {
    client_.set_read_timeout(30, 0);
  }
  Answer Call(const std::string& method, const std::string& path, const std::string& body = "") {
    httplib::Headers headers;
    if (!token_.empty()) headers.emplace("Authorization", "Bearer " + token_);
    httplib::Result r = method == "GET"      ? client_.Get(("/api/v1" + path).c_str(), headers)
                        : method == "DELETE" ? client_.Delete(("/api/v1" + path).c_str(), headers)
                                             : client_.Post(("/api/v1" + path).c_str(), headers,
                                                            body, "application/json");
    Answer a;
    if (!r) return a;
    a.status = r->status;
    a.raw = r->body;
    a.headers = r->headers;
    a.body = json::parse(r->body, nullptr, false);
    return a;
  }
  Answer Get(const std::string& path) { return Call("GET", path); }
  Answer Post(const std::string& path, const json& body = json::object()) {
    return Call("POST", path, body.dump());
  }

 private:
  httplib::Client client_;
  std::string token_;
};

std::string ErrorText(const Answer& a) {
  if (!a.body.is_object() || !a.body.contains("error")) return "";
  std::string text = a.body["error"].value("message", "");
  for (const auto& e : a.body["error"]["errors"]) text += "\n" + e.get<std::string>();
  return text;
}

std::string HttpUrl(const LocalCluster& cluster) { return cluster.HttpUrl(); }

}  // namespace

TEST_CASE("the HTTP API submits, shows, pages logs, downloads checkpoints, with the CLI's rules") {
  LocalCluster cluster(/*slots=*/2);
  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0"});
  cluster.StartScheduler();
  const std::string url = HttpUrl(cluster);
  const std::string bob_file = cluster.AddUser("bob");
  const std::string carol_file = cluster.AddUser("carol");
  Api bob(url, cluster.TokenOf(bob_file));
  Api carol(url, cluster.TokenOf(carol_file));
  Api admin(url, cluster.admin_token());
  Api anonymous(url, "");

  SECTION("the OpenAPI description lists every route") {
    Answer doc = anonymous.Get("/openapi.json");
    REQUIRE(doc.status == 200);
    CHECK(doc.body["openapi"] == "3.0.3");
    for (const char* path : {"/jobs", "/jobs/{id}", "/jobs/{id}/logs", "/jobs/{id}/cancel",
                             "/jobs/{id}/checkpoints/{step}", "/nodes", "/whoami"}) {
      INFO(path);
      CHECK(doc.body["paths"].contains(path));
    }
    CHECK(doc.body["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
                  ["schema"]["required"][0] == "spec");
  }

  SECTION("no token, a wrong token, and an invented one are refused with 401") {
    Answer none = anonymous.Get("/jobs");
    CHECK(none.status == 401);
    CHECK_THAT(ErrorText(none), Catch::Contains("Authorization: Bearer"));
    Api wrong(url, "kiln_" + std::string(40, 'a'));
    Answer bad = wrong.Get("/jobs");
    CHECK(bad.status == 401);
    CHECK_THAT(ErrorText(bad), Catch::Contains("not valid"));
    CHECK(Api(url, std::string(300, 'x')).Get("/jobs").status == 401);
    Answer who = bob.Get("/whoami");
    REQUIRE(who.status == 200);
    CHECK(who.body["user"] == "bob");
    CHECK(who.body["admin"] == false);
  }

  SECTION("bad paths, methods, parameters and bodies name what is wrong") {
    Answer unknown = bob.Get("/nothing");
    CHECK(unknown.status == 404);
    CHECK_THAT(ErrorText(unknown), Catch::Contains("openapi.json"));
    CHECK(bob.Call("DELETE", "/jobs").status == 405);
    Answer id = bob.Get("/jobs/abc");
    CHECK(id.status == 400);
    CHECK_THAT(ErrorText(id), Catch::Contains("job id must be a positive integer"));
    Answer limit = bob.Get("/jobs?limit=lots");
    CHECK(limit.status == 400);
    CHECK_THAT(ErrorText(limit), Catch::Contains("limit: expected an integer"));
    Answer typo = bob.Get("/jobs?stat=RUNNING");
    CHECK(typo.status == 400);
    CHECK_THAT(ErrorText(typo), Catch::Contains("\"stat\" is not known"));
    Answer garbage = bob.Call("POST", "/jobs", "{not json");
    CHECK(garbage.status == 400);
    CHECK_THAT(ErrorText(garbage), Catch::Contains("does not parse as JSON"));
    Answer field = bob.Post("/jobs", {{"spek", SyntheticSpec("x", 1, 1, 64)}});
    CHECK(field.status == 400);
    CHECK_THAT(ErrorText(field), Catch::Contains("body.spek: not a field"));
    CHECK_THAT(ErrorText(field), Catch::Contains("body.spec: missing"));
    json bad_spec = SyntheticSpec("x", 1, 1, 64);
    bad_spec["resources"]["ranks"] = "many";
    Answer spec = bob.Post("/jobs", {{"spec", bad_spec}});
    CHECK(spec.status == 400);
    CHECK_THAT(ErrorText(spec), Catch::Contains("resources.ranks"));
    std::string deep(100, '[');
    Answer nested = bob.Call("POST", "/jobs", "{\"spec\":" + deep);
    CHECK(nested.status == 400);
    Answer huge = bob.Call("POST", "/jobs", std::string(2 << 20, ' '));
    CHECK(huge.status == 413);
    // The scheduler serves on after all of it.
    CHECK(bob.Get("/jobs").status == 200);
  }

  SECTION("a job's life through the API, and another user's refusals") {
    Answer submitted =
        bob.Post("/jobs", {{"spec", SyntheticSpec("api", 1, 2, 320)}, {"request_id", "api-1"}});
    REQUIRE(submitted.status == 201);
    const int64_t job = submitted.body["job_id"].get<int64_t>();
    Answer again =
        bob.Post("/jobs", {{"spec", SyntheticSpec("api", 1, 2, 320)}, {"request_id", "api-1"}});
    CHECK(again.status == 200);
    CHECK(again.body["job_id"] == job);
    CHECK(again.body["duplicate"] == true);
    const std::string path = "/jobs/" + std::to_string(job);

    CHECK(carol.Get(path).status == 403);
    CHECK(carol.Post(path + "/cancel").status == 403);
    CHECK(carol.Get(path + "/logs").status == 403);
    CHECK(carol.Get(path + "/checkpoints").status == 403);
    CHECK(carol.Get(path + "/checkpoints/latest").status == 403);
    CHECK(carol.Post("/nodes/" + cluster.worker_name() + "/drain").status == 403);
    CHECK(bob.Get("/jobs/999999").status == 404);

    Answer shown;
    REQUIRE(WaitFor(
        [&] {
          shown = bob.Get(path);
          return shown.status == 200 && shown.body["state"] == "COMPLETED";
        },
        120));
    // The same JSON as `kiln show --json`.
    auto cli = cluster.KilnWith(bob_file, {"show", std::to_string(job), "--json"});
    REQUIRE(cli.exit_code == 0);
    json cli_view = json::parse(cli.out);
    CHECK(cli_view["state"] == shown.body["state"]);
    CHECK(cli_view["metrics"] == shown.body["metrics"]);
    std::vector<std::string> cli_keys, api_keys;
    for (const auto& [k, v] : cli_view.items()) cli_keys.push_back(k);
    for (const auto& [k, v] : shown.body.items()) api_keys.push_back(k);
    CHECK(cli_keys == api_keys);

    Answer listed = bob.Get("/jobs?all=true&state=COMPLETED&limit=10");
    REQUIRE(listed.status == 200);
    REQUIRE(listed.body["jobs"].size() == 1);
    CHECK(listed.body["jobs"][0]["id"] == job);

    Answer first = bob.Get(path + "/logs?limit=1");
    REQUIRE(first.status == 200);
    REQUIRE(first.body["lines"].size() == 1);
    CHECK(first.body["more"] == true);
    Answer rest = bob.Get(path + "/logs?limit=5000&after_seq=" +
                          std::to_string(first.body["next_after_seq"].get<int64_t>()));
    REQUIRE(rest.status == 200);
    CHECK(rest.body["lines"].size() >= 1);
    CHECK(rest.body["lines"][0]["seq"].get<int64_t>() >
          first.body["lines"][0]["seq"].get<int64_t>());

    // Its metrics history: every epoch report, the training reports, kept after the end.
    Answer history = bob.Get(path + "/metrics");
    REQUIRE(history.status == 200);
    CHECK(history.body["epoch"].size() == 2);
    CHECK(history.body["epoch"][1]["epoch"] == 2);
    CHECK(history.body["epoch"][1].contains("test_accuracy"));
    REQUIRE(!history.body["step"].empty());
    CHECK(history.body["step"][0].contains("loss"));
    CHECK(history.body["step"][0]["attempt"] == 1);
    CHECK(carol.Get(path + "/metrics").status == 403);
    auto metrics = cluster.KilnWith(bob_file, {"metrics", std::to_string(job)});
    CHECK(metrics.exit_code == 0);
    CHECK_THAT(metrics.out, Catch::Contains("TEST_ACCURACY"));
    CHECK_THAT(metrics.out, Catch::Contains("SAMPLES_PER_S"));
    auto show_text = cluster.KilnWith(bob_file, {"show", std::to_string(job)});
    CHECK_THAT(show_text.out, Catch::Contains("loss  "));

    Answer checkpoints = bob.Get(path + "/checkpoints");
    REQUIRE(checkpoints.status == 200);
    REQUIRE(checkpoints.body.is_array());
    REQUIRE(!checkpoints.body.empty());
    const json& newest = checkpoints.body.back();
    Answer file = bob.Get(path + "/checkpoints/latest");
    REQUIRE(file.status == 200);
    CHECK(static_cast<int64_t>(file.raw.size()) == newest["bytes"].get<int64_t>());
    CHECK(kiln::Sha256Hex(file.raw) == newest["sha256"].get<std::string>());
    auto sha = file.headers.find("X-Checkpoint-Sha256");
    REQUIRE(sha != file.headers.end());
    CHECK(sha->second == newest["sha256"].get<std::string>());
    CHECK(bob.Get(path + "/checkpoints/12345678").status == 404);
    Answer latest_rm = bob.Call("DELETE", path + "/checkpoints/latest");
    CHECK(latest_rm.status == 400);

    Answer cancel_done = bob.Post(path + "/cancel");
    CHECK((cancel_done.status == 200 || cancel_done.status == 409));
  }

  SECTION("hold, release, priority and cancel follow the CLI's rules") {
    Answer held =
        bob.Post("/jobs", {{"spec", SyntheticSpec("held", 1, 100000, 4096)}, {"hold", true}});
    REQUIRE(held.status == 201);
    const std::string path = "/jobs/" + std::to_string(held.body["job_id"].get<int64_t>());
    Answer view = bob.Get(path);
    CHECK(view.body["held"] == true);
    CHECK(carol.Post(path + "/release").status == 403);
    Answer raise = bob.Post(path + "/priority", {{"priority", 50}});
    CHECK(raise.status == 403);
    CHECK_THAT(ErrorText(raise), Catch::Contains("admin"));
    CHECK(bob.Post(path + "/priority", json::object()).status == 400);
    CHECK(admin.Post(path + "/priority", {{"priority", 50}}).status == 200);
    Answer released = bob.Post(path + "/release");
    REQUIRE(released.status == 200);
    CHECK(released.body["held"] == false);
    REQUIRE(WaitFor([&] { return bob.Get(path).body["state"] == "RUNNING"; }, 60));
    Answer nodes = bob.Get("/nodes");
    REQUIRE(nodes.status == 200);
    REQUIRE(nodes.body.size() == 1);
    CHECK(nodes.body[0]["name"] == cluster.worker_name());
    Answer cancelled = bob.Post(path + "/cancel");
    REQUIRE(cancelled.status == 200);
    CHECK(cancelled.body["state"] == "CANCELLED");
  }
}

TEST_CASE("with --http-cert and --http-key the API and dashboard are served over HTTPS only") {
  LocalCluster cluster(/*slots=*/1, 3.0, /*with_worker=*/false);
  const std::string cert = cluster.dir() + "/http.crt", key = cluster.dir() + "/http.key";
  auto made = kiln::testing::RunCommand(
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
       "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0", "--http-cert", cert, "--http-key", key});
  cluster.StartScheduler();
  const std::string url = HttpUrl(cluster);
  REQUIRE(url.rfind("https://127.0.0.1:", 0) == 0);
  httplib::SSLClient secure("127.0.0.1", std::stoi(url.substr(url.rfind(':') + 1)));
  secure.set_ca_cert_path(cert.c_str());
  secure.enable_server_certificate_verification(true);
  auto who = secure.Get("/api/v1/whoami", {{"Authorization", "Bearer " + cluster.admin_token()}});
  REQUIRE(who);
  CHECK(who->status == 200);
  CHECK(json::parse(who->body)["user"] == "admin");
  auto page = secure.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  // Plain HTTP to the same port gets no answer.
  httplib::Client plain("http://127.0.0.1:" + url.substr(url.rfind(':') + 1));
  plain.set_read_timeout(3, 0);
  auto refused = plain.Get("/api/v1/whoami");
  CHECK((!refused || refused->status != 200));

  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0", "--http-cert", cert});
  auto lone = kiln::testing::RunCommand(
      {kiln::testing::BinPath("kiln-scheduler"), "--state-dir", cluster.state_dir(), "--listen",
       "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--http-cert", cert},
      15);
  CHECK(lone.exit_code != 0);
  CHECK_THAT(lone.err, Catch::Contains("--http-cert and --http-key go together"));
}
