#include <catch2/catch.hpp>

#include "common/protocol/codec.h"

using namespace kiln::protocol;
using nlohmann::json;

namespace {

// A message with every field set to a non-default value, so a field dropped by the codec shows.
template <typename M>
M Sample();

template <> SubmitRequest Sample() { return {"req-1", json{{"name", "x"}}, 4, 500, "alice", true}; }
template <> SubmitReply Sample() { return {42, true, "Infeasible: needs 4 ranks"}; }
template <> QueueRequest Sample() { return {true}; }
template <> ShowRequest Sample() { return {7}; }
template <> MetricsHistoryRequest Sample() { return {9}; }
template <> CancelRequest Sample() { return {8}; }
template <> CancelReply Sample() { return {8, "CANCELLED"}; }
template <> LogsRequest Sample() { return {9, 100, 50}; }
template <> NodesRequest Sample() { return {}; }
template <> WhoAmIRequest Sample() { return {}; }
template <> CheckpointsRequest Sample() { return {10}; }
template <> DataReply Sample() { return {json::array({1, 2, 3})}; }
template <> ErrorReply Sample() { return {"INVALID_ARGUMENT", "bad", {"a: b", "c: d"}}; }
template <> RegisterWorker Sample() {
  return {"node-a",
          4,
          1 << 30,
          2,
          {{3, 1}, {4, 2}},
          {"ib", "nvme"},
          "10.0.0.2",
          "tcp://10.0.0.2:4000",
          0,
          std::string("root"),
          std::vector<AccountUid>{{"alice", 1000}}};
}
template <> JobAdminRequest Sample() { return {12, "priority", 7}; }
template <> NodeAdminRequest Sample() { return {"node-a", "drain", "maintenance"}; }
template <>
RegisterAck Sample() {
  return {"node-a", 1000, 30000, std::vector<std::string>{"alice", "bob"}};
}
template <>
CheckAccounts Sample() {
  return {{"carol"}};
}
template <>
AccountReport Sample() {
  return {"node-a", {{"alice", 1000}, {"ghost", -1}}};
}
template <> Heartbeat Sample() { return {"node-a", {{5, 1}}}; }
template <> Reregister Sample() { return {"unknown"}; }
template <> LaunchJob Sample() {
  return {11,
          2,
          json{{"name", "j"}},
          4,
          500,
          10,
          std::string(64, 'd'),
          "/shared/x.pt",
          {1, 3},
          {{"a", "10.0.0.1", 2, "tcp://10.0.0.1:4000", "key-a"},
           {"b", "10.0.0.2", 2, "tcp://10.0.0.2:4000", "key-b"}},
          "secret",
          std::string("alice"),
          false,
          std::vector<std::string>{std::string(64, 'e')}};
}
template <> DeployRequest Sample() {
  return {"fmnist", 7, 300, true, true, 3, 2, std::string("2G"), 1, 64, 1.5};
}
template <> UndeployRequest Sample() { return {"fmnist"}; }
template <> ServicesRequest Sample() { return {std::string("fmnist")}; }
template <> ServiceGrantRequest Sample() { return {"fmnist", "bob", true}; }
template <> ServeTokens Sample() { return {11, 2, {std::string(64, 'f')}}; }
template <> RemoteExec Sample() { return {11, 2, "secret", "orted -mca ess \"env\""}; }
template <> RemoteExit Sample() { return {0, {"started"}}; }
template <> KillJob Sample() { return {11, 2, "cancelled"}; }
template <> JobStarted Sample() { return {11, 2, 1234}; }
template <> LogBatch Sample() { return {11, 2, {"line one", "line two"}, 40, 12}; }
template <> LogAck Sample() { return {11, 2, 42, true}; }
template <> ProgressReport Sample() { return {11, 2, json{{"step", 10}, {"loss", 0.5}}}; }
template <> CheckpointBegin Sample() {
  return {11, 2, 500, 1, json{{"loss", 0.3}}, 1024, std::string(64, 'a'), "/shared/a.pt"};
}
template <> CheckpointRemove Sample() { return {11, 500}; }
template <> CheckpointOffset Sample() { return {std::string(64, 'a'), 4096, true}; }
template <> CheckpointChunk Sample() { return {std::string(64, 'a'), 8192}; }
template <> CheckpointDone Sample() { return {std::string(64, 'a'), false, "hash mismatch"}; }
template <> CheckpointRead Sample() { return {11, 500, 4096, 1 << 20}; }
template <> CheckpointData Sample() { return {11, 500, std::string(64, 'a'), 1 << 22, 4096}; }
template <> JobExited Sample() { return {11, 2, 1, 9, "killed", "rank 0 on n1: cannot open /d: No such file", true, false}; }
template <> ExitAck Sample() { return {11, 2}; }
template <> TrainProgress Sample() { return {json{{"step", 3}}}; }
template <> TrainCheckpoint Sample() {
  return {500, 1, json::object(), "/run/ckpt.pt", 99, std::string(64, 'b')};
}

template <typename M>
void CheckRoundTrip() {
  INFO("message type " << M::kType);
  M original = Sample<M>();
  Frames frames = Encode(original, "id-9", {"binary\0payload"});
  REQUIRE(frames.size() == 2);
  auto envelope = DecodeEnvelope(frames[0]);
  REQUIRE(envelope.ok());
  CHECK(envelope->type == M::kType);
  CHECK(envelope->id == "id-9");
  auto decoded = DecodeBody<M>(*envelope);
  REQUIRE(decoded.ok());
  CHECK(BodyOf(*decoded) == BodyOf(original));
  CHECK(frames[1] == "binary\0payload");
}

Envelope Parse(const std::string& text) {
  auto e = DecodeEnvelope(text);
  REQUIRE(e.ok());
  return *e;
}

}  // namespace

TEST_CASE("every message survives an encode/decode round trip unchanged") {
#define KILN_ROUND_TRIP(M) CheckRoundTrip<M>();
  KILN_FOR_EACH_MESSAGE(KILN_ROUND_TRIP)
#undef KILN_ROUND_TRIP
}

TEST_CASE("malformed envelopes are rejected with a named reason, never thrown") {
  CHECK(DecodeEnvelope("").status().message().find("not valid JSON") != std::string::npos);
  CHECK(DecodeEnvelope("\xff\xfe garbage").status().message().find("JSON") != std::string::npos);
  CHECK(DecodeEnvelope("[1]").status().message().find("object") != std::string::npos);
  CHECK(DecodeEnvelope(R"({"type":"queue"})").status().message().find("envelope.v") !=
        std::string::npos);
  CHECK(DecodeEnvelope(R"({"v":2,"type":"queue"})").status().message().find("version 2") !=
        std::string::npos);
  CHECK(DecodeEnvelope(R"({"v":1,"type":"launch_missiles"})").status().message().find(
            "unknown message type") != std::string::npos);
  CHECK(DecodeEnvelope(R"({"v":1,"type":7})").status().message().find("envelope.type") !=
        std::string::npos);
  CHECK(DecodeEnvelope(R"({"v":1,"type":"queue","id":5})").status().message().find(
            "envelope.id") != std::string::npos);
  CHECK(DecodeEnvelope(R"({"v":1,"type":"queue","body":[]})").status().message().find(
            "envelope.body") != std::string::npos);
  CHECK_FALSE(DecodeEnvelope(std::string(kMaxEnvelopeBytes + 1, ' ')).ok());
}

TEST_CASE("a body with missing or mistyped fields names each one") {
  auto bad = DecodeBody<LogsRequest>(
      Parse(R"({"v":1,"type":"logs","body":{"job_id":"seven","limit":10}})"));
  REQUIRE_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  CHECK(m.find("body.job_id: must be an integer, got string") != std::string::npos);
  CHECK(m.find("body.after_seq: is required") != std::string::npos);
}

TEST_CASE("nested lists of structs are checked element by element") {
  auto bad = DecodeBody<RegisterWorker>(Parse(
      R"({"v":1,"type":"register","body":{"name":"a","slots":1,"memory_bytes":0,"gpus":0,
          "running":[{"job_id":1,"attempt":1},{"job_id":"x","attempt":1}]}})"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("body.running[1].job_id") != std::string::npos);
}

TEST_CASE("decoding a body as the wrong message type is refused") {
  auto wrong = DecodeBody<ShowRequest>(Parse(R"({"v":1,"type":"cancel","body":{"job_id":1}})"));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().message().find("expected message type \"show\"") != std::string::npos);
}

TEST_CASE("log lines with invalid UTF-8 are encoded with replacement characters, not thrown on") {
  LogBatch batch{1, 1, {std::string("bad \xff\xfe bytes")}};
  Frames frames = Encode(batch);
  auto envelope = DecodeEnvelope(frames[0]);
  REQUIRE(envelope.ok());
  auto decoded = DecodeBody<LogBatch>(*envelope);
  REQUIRE(decoded.ok());
  CHECK(decoded->lines[0].rfind("bad ", 0) == 0);
  CHECK(decoded->lines[0].find("bytes") != std::string::npos);
}

TEST_CASE("deeply nested JSON is refused before it is built, so it cannot exhaust the stack") {
  std::string deep = R"({"v":1,"type":"submit","id":"x","body":{"request_id":"r","spec":)" +
                     std::string(200000, '[') + std::string(200000, ']') + "}}";
  auto e = DecodeEnvelope(deep);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("nests deeper") != std::string::npos);
  // Brackets inside strings do not count.
  auto fine = DecodeEnvelope(R"({"v":1,"type":"logs","id":"[[[[","body":{"x":"]]]]{{{{"}})");
  CHECK(fine.ok());
  CHECK(kiln::JsonNestingDepth(R"({"a":[1,{"b":"[\"["}]})") == 3);
}

TEST_CASE("optional fields may be absent, and are left out when empty") {
  auto decoded = DecodeBody<SubmitRequest>(
      Parse(R"({"v":1,"type":"submit","body":{"request_id":"r","spec":{},"user":"u","hold":false}})"));
  REQUIRE(decoded.ok());
  CHECK_FALSE(decoded->resume_from_job.has_value());
  CHECK_FALSE(BodyOf(*decoded).contains("resume_from_step"));
  auto bad = DecodeBody<SubmitRequest>(Parse(
      R"({"v":1,"type":"submit","body":{"request_id":"r","spec":{},"user":"u","hold":false,"resume_from_job":"x"}})"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("body.resume_from_job: must be an integer") !=
        std::string::npos);
}
