// kiln-serve's pure pieces: the Open Inference Protocol codec, the batching decisions and the
// batcher's thread, the token file, the latency window.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/credentials.h"
#include "common/file_util.h"
#include "worker/serve/access_tokens.h"
#include "worker/serve/batcher.h"
#include "worker/serve/inference_codec.h"
#include "worker/serve/serve_stats.h"

using nlohmann::json;
using namespace kiln::serve;

namespace {

ModelSignature FourFeatures() {
  ModelSignature m;
  m.name = "clf";
  m.version = "7:100";
  m.features = 4;
  m.input_shape = {-1, 4};
  m.classes = 3;
  m.max_rows = 8;
  return m;
}

json Request(json shape, json data, std::string datatype = "FP32") {
  return {
      {"inputs", {{{"name", "input"}, {"shape", shape}, {"datatype", datatype}, {"data", data}}}}};
}

std::string ErrorOf(const json& body, const ModelSignature& m = FourFeatures()) {
  auto r = ParseInferRequest(body.dump(), m);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == kiln::StatusCode::kInvalidArgument);
  return r.status().message();
}

}  // namespace

TEST_CASE("infer request: flat and nested data give the same rows", "[serve]") {
  auto flat = ParseInferRequest(Request({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}).dump(), FourFeatures());
  auto nested = ParseInferRequest(Request({2, 2, 2}, {{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}).dump(),
                                  FourFeatures());
  REQUIRE(flat.ok());
  REQUIRE(nested.ok());
  CHECK(flat->rows == 2);
  CHECK(flat->values == nested->values);
  CHECK(flat->values[7] == 8.0f);
  CHECK(flat->want_label);
  CHECK(flat->want_probability);
}

TEST_CASE("infer request: each mistake names its field", "[serve]") {
  CHECK_THAT(ErrorOf(Request({2, 4}, {1, 2, 3})), Catch::Contains("inputs[0].data") &&
                                                      Catch::Contains("3 values") &&
                                                      Catch::Contains("needs 8"));
  CHECK_THAT(ErrorOf(Request({1, 5}, {1, 2, 3, 4, 5})),
             Catch::Contains("inputs[0].shape") && Catch::Contains("4 values"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, 2, 3, 4}, "INT32")),
             Catch::Contains("inputs[0].datatype") && Catch::Contains("INT32"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, "x", 3, 4})),
             Catch::Contains("inputs[0].data[1]") && Catch::Contains("number"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, true, 3, 4})), Catch::Contains("inputs[0].data[1]"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, 1e300, 3, 4})), Catch::Contains("finite FP32"));
  CHECK_THAT(ErrorOf(Request({9, 4}, json::array())), Catch::Contains("1..8"));
  CHECK_THAT(ErrorOf(Request({0, 4}, json::array())), Catch::Contains("1..8"));
  CHECK_THAT(ErrorOf(Request({-1, 4}, json::array())), Catch::Contains("non-negative"));
  CHECK_THAT(ErrorOf(Request({4}, {1, 2, 3, 4})), Catch::Contains("inputs[0].shape"));
  // Dimensions whose product would overflow int64 (and wrap to the model's width), or hold 0.
  CHECK_THAT(ErrorOf(Request({1, 4, int64_t{4611686018427387905}}, {1, 2, 3, 4})),
             Catch::Contains("inputs[0].shape"));
  CHECK_THAT(ErrorOf(Request({1, 4, 0}, {1, 2, 3, 4})), Catch::Contains("inputs[0].shape"));
  CHECK_THAT(ErrorOf(Request({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9})),
             Catch::Contains("9 values") && Catch::Contains("needs 8"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, {{"x", 1}}, 3, 4})),
             Catch::Contains("inputs[0].data[1]") && Catch::Contains("got object"));
  CHECK_THAT(ErrorOf(Request({1, 4}, {1, nullptr, 3, 4})),
             Catch::Contains("inputs[0].data[1]") && Catch::Contains("got null"));
  json no_data = Request({1, 4}, {1, 2, 3, 4});
  no_data["inputs"][0].erase("data");
  CHECK_THAT(ErrorOf(no_data), Catch::Contains("inputs[0].data: missing"));
  // Past the most values any request may hold (max_rows x features), counting stops.
  CHECK_THAT(ErrorOf(Request({8, 4}, std::vector<float>(40, 1.0f))),
             Catch::Contains("more than 32 values"));
  // A duplicated data key is refused, not merged.
  auto twice = ParseInferRequest(R"({"inputs": [{"name": "input", "shape": [1, 4],
      "datatype": "FP32", "data": [1, 2], "data": [3, 4]}]})",
                                 FourFeatures());
  REQUIRE_FALSE(twice.ok());
  CHECK_THAT(twice.status().message(), Catch::Contains("more than once"));
  // A second input's data is not taken for the first's.
  json two = Request({1, 4}, {1, 2, 3, 4});
  two["inputs"].push_back(two["inputs"][0]);
  CHECK_THAT(ErrorOf(two), Catch::Contains("exactly one input"));
  CHECK_THAT(ErrorOf(json{{"inputs", json::array()}}), Catch::Contains("exactly one input"));
  CHECK_THAT(ErrorOf(json{{"input", 1}}), Catch::Contains("input: unknown field"));
  CHECK_THAT(ErrorOf(json::array()), Catch::Contains("must be a JSON object"));
  json other = Request({1, 4}, {1, 2, 3, 4});
  other["inputs"][0]["name"] = "pixels";
  CHECK_THAT(ErrorOf(other), Catch::Contains("inputs[0].name") && Catch::Contains("\"input\""));
  json outputs = Request({1, 4}, {1, 2, 3, 4});
  outputs["outputs"] = {{{"name", "logits"}}};
  CHECK_THAT(ErrorOf(outputs), Catch::Contains("outputs[0].name") && Catch::Contains("logits"));

  auto garbage = ParseInferRequest("{\"inputs\": [", FourFeatures());
  REQUIRE_FALSE(garbage.ok());
  CHECK_THAT(garbage.status().message(), Catch::Contains("not valid JSON"));
  // Deep nesting is refused by a scan, before a recursive parser could run out of stack.
  auto deep = ParseInferRequest(std::string(100000, '['), FourFeatures());
  REQUIRE_FALSE(deep.ok());
  CHECK_THAT(deep.status().message(), Catch::Contains("nested deeper"));
}

TEST_CASE("infer request: fields in any order, data before shape", "[serve]") {
  auto r = ParseInferRequest(
      R"({"inputs": [{"data": [[1, 2, 3, 4]], "datatype": "FP32", "shape": [1, 4], "name": "input"}],
          "id": "x"})",
      FourFeatures());
  REQUIRE(r.ok());
  CHECK(r->values == std::vector<float>{1, 2, 3, 4});
  CHECK(r->id == "x");
}

TEST_CASE("infer reply: the outputs asked for, in the protocol's shape", "[serve]") {
  json body = Request({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  body["id"] = "req-1";
  body["outputs"] = {{{"name", "label"}}};
  auto r = ParseInferRequest(body.dump(), FourFeatures());
  REQUIRE(r.ok());
  CHECK_FALSE(r->want_probability);
  json reply = InferResponse(FourFeatures(), *r, {{2, 0.9}, {0, 0.6}});
  CHECK(reply["id"] == "req-1");
  CHECK(reply["model_name"] == "clf");
  CHECK(reply["model_version"] == "7:100");
  REQUIRE(reply["outputs"].size() == 1);
  CHECK(reply["outputs"][0]["name"] == "label");
  CHECK(reply["outputs"][0]["datatype"] == "INT64");
  CHECK(reply["outputs"][0]["shape"] == json({2}));
  CHECK(reply["outputs"][0]["data"] == json({2, 0}));
  json meta = ModelMetadata(FourFeatures());
  CHECK(meta["inputs"][0]["shape"] == json({-1, 4}));
  CHECK(meta["inputs"][0]["datatype"] == "FP32");
  CHECK(json::parse(ErrorBody("bad \xff"))["error"].is_string());
}

TEST_CASE("batching decisions: full, late, or nobody else coming", "[serve]") {
  BatchPolicy p{8, 2000};
  CHECK_FALSE(ShouldRunBatch(0, 5000, 0, p));
  CHECK(ShouldRunBatch(3, 0, 0, p));          // a lone request does not wait
  CHECK_FALSE(ShouldRunBatch(3, 100, 2, p));  // others are being read: wait for them
  CHECK(ShouldRunBatch(3, 2000, 2, p));       // ... but not past the delay
  CHECK(ShouldRunBatch(8, 0, 5, p));          // full
  CHECK(RequestsInBatch({}, p) == 0);
  CHECK(RequestsInBatch({3, 3, 3}, p) == 2);
  CHECK(RequestsInBatch({20, 1}, p) == 1);  // a request larger than a batch runs alone
  CHECK(RequestsInBatch({1, 1, 1, 1, 1, 1, 1, 1, 1}, p) == 8);
}

TEST_CASE("batcher: concurrent requests share forward passes and get their own rows", "[serve]") {
  std::atomic<int> calls{0};
  DynamicBatcher batcher({16, 10000000}, [&](const std::vector<float>& values, int64_t rows) {
    ++calls;
    std::vector<RowPrediction> out;
    for (int64_t r = 0; r < rows; ++r) out.push_back({static_cast<int64_t>(values[r * 2]), 1});
    return out;
  });
  constexpr int kClients = 8;
  std::vector<std::unique_ptr<DynamicBatcher::Arrival>> arrivals;
  for (int i = 0; i < kClients; ++i)
    arrivals.push_back(std::make_unique<DynamicBatcher::Arrival>(batcher));
  std::vector<std::future<kiln::Result<std::vector<RowPrediction>>>> answers;
  for (int i = 0; i < kClients; ++i) {
    answers.push_back(std::async(std::launch::async, [&, i] {
      return batcher.Infer({static_cast<float>(i), 0, static_cast<float>(i + 100), 0}, 2,
                           arrivals[static_cast<size_t>(i)].get());
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    auto r = answers[static_cast<size_t>(i)].get();
    REQUIRE(r.ok());
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].label == i);
    CHECK((*r)[1].label == i + 100);
  }
  // Every client announced itself before any was queued, so the batch waited for all of them.
  CHECK(calls.load() == 1);
  CHECK(batcher.batched_rows() == 2 * kClients);
}

TEST_CASE("batcher: a model that throws fails its batch, and the batcher goes on", "[serve]") {
  bool fail = true;
  DynamicBatcher batcher({4, 1000}, [&](const std::vector<float>&, int64_t rows) {
    if (fail) throw std::runtime_error("boom");
    return std::vector<RowPrediction>(static_cast<size_t>(rows));
  });
  auto bad = batcher.Infer({1}, 1);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("boom"));
  fail = false;
  CHECK(batcher.Infer({1}, 1).ok());
}

TEST_CASE("access tokens: owner and grants by hash, re-read when the file changes", "[serve]") {
  const std::string dir = "/tmp/kiln-serve-tokens-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/tokens.json";
  REQUIRE(kiln::WriteFileAtomic(path, TokenFileText({kiln::Sha256Hex("kiln_alice")})).ok());
  AccessTokens tokens(path);
  REQUIRE(tokens.Load().ok());
  CHECK(tokens.Check("Bearer kiln_alice").ok());
  CHECK(tokens.Check("").code() == kiln::StatusCode::kUnauthenticated);
  CHECK(tokens.Check("Basic abc").code() == kiln::StatusCode::kUnauthenticated);
  CHECK(tokens.Check("Bearer kiln_bob").code() == kiln::StatusCode::kPermissionDenied);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // mtime and the 1 s re-check
  REQUIRE(kiln::WriteFileAtomic(
              path, TokenFileText({kiln::Sha256Hex("kiln_alice"), kiln::Sha256Hex("kiln_bob")}))
              .ok());
  CHECK(tokens.Check("Bearer kiln_bob").ok());
  CHECK_FALSE(ParseTokenFile("{\"tokens_sha256\": [\"short\"]}").ok());
  CHECK_FALSE(ParseTokenFile("[]").ok());
  std::filesystem::remove_all(dir);
}

TEST_CASE("latency window: quantiles by nearest rank", "[serve]") {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  CHECK(Quantile(v, 0.5) == 50);
  CHECK(Quantile(v, 0.99) == 99);
  std::vector<double> one = {3};
  CHECK(Quantile(one, 0.99) == 3);
  ServeStats stats;
  stats.Record(1, false);
  stats.Record(9, true);
  WindowStats w = stats.Take();
  CHECK(w.requests == 2);
  CHECK(w.errors == 1);
  CHECK(w.p99_ms == 9);
  CHECK(stats.Take().requests == 0);
  CHECK(stats.total_requests() == 2);
}

TEST_CASE("service call tokens: derived from the token digest, one per service", "[serve]") {
  const std::string digest = kiln::AccessTokenDigest("kiln_alice");
  const std::string a = kiln::ServiceCallToken(digest, "clf");
  CHECK(a.rfind("kiln_svc_", 0) == 0);
  CHECK(a.size() == 9 + 64);
  CHECK(a == kiln::ServiceCallToken(digest, "clf"));
  CHECK(a != kiln::ServiceCallToken(digest, "clf2"));
  CHECK(a != kiln::ServiceCallToken(kiln::AccessTokenDigest("kiln_bob"), "clf"));
  CHECK(a.find("kiln_alice") == std::string::npos);
}
