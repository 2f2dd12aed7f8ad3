// Restarts lose nothing: a job's life is played step by step against the real scheduler (real
// SQLite, fake clock, in-memory transport, fake workers), once without a restart and once with a
// kill -9 and restart before each step (every message in flight lost with it). Each run must end
// exactly as the run without a restart did: same attempts on the same nodes, resumed from the
// same checkpoints, same state changes, no retry used, and never two attempts at once.
#include <catch2/catch.hpp>
#include <functional>

#include "common/file_util.h"
#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::ServiceHarness;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

json TinySpec(const std::string& name, int64_t ranks = 1) {
  return {{"name", name},
          {"resources", {{"ranks", ranks}}},
          {"model", {{"type", "mlp"}, {"hidden", {4}}}},
          {"data", {{"type", "synthetic"}, {"samples", 8}, {"features", 2}, {"classes", 2}}},
          {"train", {{"epochs", 1}, {"batch_size", 4}, {"loss", "cross_entropy"},
                     {"optimizer", {{"type", "sgd"}, {"lr", 0.1}}}}}};
}

// What a job's life came to, as `kiln show` tells it.
json Outcome(const json& shown) {
  json attempts = json::array();
  for (const auto& a : shown["attempts"]) {
    json nodes = json::array();
    for (const auto& n : a["nodes"]) nodes.push_back(n["node"]);
    attempts.push_back({{"attempt", a["attempt"]}, {"nodes", nodes}, {"outcome", a["outcome"]},
                        {"resumed_from_step", a["resumed_from_step"]}});
  }
  json checkpoints = json::array();
  for (const auto& c : shown["checkpoints"]) {
    checkpoints.push_back({{"step", c["step"]}, {"sha256", c["sha256"]}});
  }
  json transitions = json::array();
  for (const auto& e : shown["events"]) transitions.push_back(e["from"].get<std::string>() + ">" + e["to"].get<std::string>());
  return {{"state", shown["state"]}, {"attempt", shown["attempt"]}, {"attempts", attempts},
          {"checkpoints", checkpoints}, {"transitions", transitions},
          {"exit_code", shown["exit_code"]}};
}

// Turns (a quarter second apart) until `done`, the workers heartbeating and reading their mail
// as agents do; false if it does not happen within `ms`.
bool RunUntil(ServiceHarness& h, std::vector<FakeWorker*> workers,
              const std::function<bool()>& done, kiln::Millis ms = 20000) {
  for (kiln::Millis waited = 0; waited <= ms; waited += 250) {
    for (auto* w : workers) w->Poll();
    if (done()) return true;
    for (auto* w : workers) w->Heartbeat();
    h.Turn(250);
  }
  return false;
}

// A life is a list of named steps; `restart_before` (or -1 for none) is where the scheduler is
// killed and restarted, after which the workers find out (reregister) and register again.
struct Life {
  std::vector<std::pair<std::string, std::function<void()>>> steps;
};

void Play(ServiceHarness& h, std::vector<FakeWorker*> workers, const Life& life,
          int restart_before) {
  for (size_t i = 0; i <= life.steps.size(); ++i) {
    if (static_cast<int>(i) == restart_before) {
      h.Restart();
      // Heartbeats reach a scheduler that does not know them: it asks each to register again.
      for (int round = 0; round < 3; ++round) {
        for (auto* w : workers) w->Heartbeat();
        h.Turn(250);
        for (auto* w : workers) w->Poll();
      }
    }
    if (i == life.steps.size()) break;
    INFO("step " << i << ": " << life.steps[i].first);
    life.steps[i].second();
  }
}

// One node's job: launched, runs, saves a checkpoint (its upload interrupted), is requeued by a
// drain, saves its stop checkpoint, exits, resumes on another node from that checkpoint, and
// completes. Returns its outcome.
json SingleNodeLife(int restart_before, std::vector<std::string>* step_names = nullptr) {
  ServiceHarness h;
  FakeWorker a(h, "node-a");
  FakeWorker b(h, "node-b");
  std::vector<FakeWorker*> workers{&a, &b};
  const std::string first(5000, 'x');
  const std::string stop(4000, 'y');
  int64_t id = 0;
  Life life;
  life.steps = {
      {"submitted", [&] {
         id = h.Submit(TinySpec("life"));
         REQUIRE(h.Show(id)["state"] == "PENDING");
       }},
      {"launch sent", [&] {
         a.Register();
         REQUIRE(RunUntil(h, {&a}, [&] { return a.LaunchOf(id).has_value(); }));
       }},
      {"running", [&] {
         // A launch lost in a restart is sent again, for the same attempt.
         REQUIRE(RunUntil(h, {&a}, [&] { return a.LaunchOf(id).has_value(); }));
         REQUIRE(a.LaunchOf(id)->attempt == 1);
         a.Start(id, 1);
         h.Turn(0);
         REQUIRE(h.Show(id)["state"] == "RUNNING");
       }},
      {"uploading a checkpoint", [&] {
         auto last = a.Upload(id, 1, 10, first, /*stop_after=*/2048);
         REQUIRE(last);
         REQUIRE(last->envelope.type == "ckpt_offset");
       }},
      {"checkpoint stored", [&] {
         auto done = a.Upload(id, 1, 10, first);
         REQUIRE(done);
         INFO(done->body().dump());
         REQUIRE(done->envelope.type == "ckpt_done");
         REQUIRE(done->body()["ok"] == true);
       }},
      {"requeue waits for its stop checkpoint", [&] {
         auto drained = h.Ask(h.root(), NodeAdminRequest{"node-a", "drain_requeue", "maintenance"});
         REQUIRE(drained.envelope.type == "data");
         REQUIRE(h.Show(id)["state"] == "PENDING");
         b.Register();
         h.Turn(0);
       }},
      {"stop requested", [&] {
         // The kill (resent while node-a still reports the attempt), and no launch elsewhere.
         REQUIRE(RunUntil(h, workers, [&] { return !a.kills().empty(); }));
         h.RunFor(3000);
         REQUIRE_FALSE(b.LaunchOf(id));
         REQUIRE(h.Show(id)["state"] == "PENDING");
       }},
      {"stop checkpoint stored", [&] {
         auto done = a.Upload(id, 1, 20, stop);
         REQUIRE(done);
         REQUIRE(done->envelope.type == "ckpt_done");
         REQUIRE_FALSE(b.LaunchOf(id));
       }},
      {"old attempt exited", [&] {
         a.Exit({id, 1, 143, 0, "stopped on SIGTERM", std::nullopt, std::nullopt, std::nullopt});
         REQUIRE(RunUntil(h, workers, [&] { return b.LaunchOf(id).has_value(); }));
       }},
      {"fetching the resume checkpoint", [&] {
         REQUIRE(RunUntil(h, workers, [&] { return b.LaunchOf(id).has_value(); }));
         const LaunchJob launch = *b.LaunchOf(id);
         REQUIRE(launch.attempt == 2);
         REQUIRE(launch.resume_step == 20);
         auto [ok, bytes] = b.Fetch(id, 20, static_cast<int64_t>(stop.size()));
         INFO(bytes.substr(0, 200));
         REQUIRE(ok);
         REQUIRE(bytes == stop);
       }},
      {"resumed attempt running", [&] {
         auto [ok, bytes] = b.Fetch(id, 20, static_cast<int64_t>(stop.size()));
         REQUIRE(ok);
         b.Start(id, 2);
         h.Turn(0);
         REQUIRE(h.Show(id)["state"] == "RUNNING");
       }},
      {"resumed attempt exited", [&] {
         b.Exit({id, 2, 0, 0, "", std::nullopt, std::nullopt, std::nullopt});
         REQUIRE(RunUntil(h, workers, [&] { return h.Show(id)["state"] == "COMPLETED"; }));
       }},
  };
  if (step_names != nullptr) {
    for (const auto& [name, step] : life.steps) step_names->push_back(name);
  }
  Play(h, workers, life, restart_before);
  h.RunFor(2000);
  // Never two attempts at once: node-a never got attempt 2, node-b never attempt 1.
  for (const auto& l : a.launches()) CHECK(l.attempt == 1);
  for (const auto& l : b.launches()) CHECK(l.attempt == 2);
  return Outcome(h.Show(id));
}

// A gang over two nodes: launched on both, both start, the member's part ends first, then the
// leader's, and the job completes once.
json GangLife(int restart_before, std::vector<std::string>* step_names = nullptr) {
  ServiceHarness h;
  FakeWorker a(h, "node-a", 1, 0, "10.9.0.1");
  FakeWorker b(h, "node-b", 1, 0, "10.9.0.2");
  std::vector<FakeWorker*> workers{&a, &b};
  int64_t id = 0;
  Life life;
  life.steps = {
      {"submitted", [&] {
         a.Register();
         b.Register();
         h.Turn(0);
         id = h.Submit(TinySpec("gang", 2));
       }},
      {"launch sent to both", [&] {
         REQUIRE(RunUntil(h, workers, [&] { return a.LaunchOf(id) && b.LaunchOf(id); }));
       }},
      {"both running", [&] {
         REQUIRE(RunUntil(h, workers, [&] { return a.LaunchOf(id) && b.LaunchOf(id); }));
         a.Start(id, 1);
         b.Start(id, 1);
         h.Turn(0);
         REQUIRE(h.Show(id)["state"] == "RUNNING");
       }},
      {"member's part ended", [&] {
         const std::string member = a.LaunchOf(id)->hosts.at(0).node == "node-a" ? "b" : "a";
         FakeWorker& m = member == "a" ? a : b;
         m.Exit({id, 1, 0, 0, "", std::nullopt, std::nullopt, std::nullopt});
         h.RunFor(2000);
         REQUIRE(h.Show(id)["state"] == "RUNNING");
       }},
      {"leader exited", [&] {
         FakeWorker& leader = a.LaunchOf(id)->hosts.at(0).node == "node-a" ? a : b;
         leader.Exit({id, 1, 0, 0, "", std::nullopt, std::nullopt, std::nullopt});
         REQUIRE(RunUntil(h, workers, [&] { return h.Show(id)["state"] == "COMPLETED"; }));
       }},
  };
  if (step_names != nullptr) {
    for (const auto& [name, step] : life.steps) step_names->push_back(name);
  }
  Play(h, workers, life, restart_before);
  h.RunFor(2000);
  CHECK(a.kills().empty());
  CHECK(b.kills().empty());
  for (const auto& l : a.launches()) CHECK(l.attempt == 1);
  for (const auto& l : b.launches()) CHECK(l.attempt == 1);
  return Outcome(h.Show(id));
}

}  // namespace

TEST_CASE("a job's life ends the same with a scheduler restart before any of its steps") {
  std::vector<std::string> steps;
  const json expected = SingleNodeLife(-1, &steps);
  INFO(expected.dump(1));
  REQUIRE(expected["state"] == "COMPLETED");
  REQUIRE(expected["attempt"] == 2);
  REQUIRE(expected["attempts"].size() == 2);
  CHECK(expected["attempts"][0]["nodes"] == json::array({"node-a"}));
  CHECK(expected["attempts"][1]["nodes"] == json::array({"node-b"}));
  CHECK(expected["attempts"][1]["resumed_from_step"] == 20);
  REQUIRE(expected["checkpoints"].size() == 2);
  for (int at = 0; at <= static_cast<int>(steps.size()); ++at) {
    DYNAMIC_SECTION("restart before step " << at << " ("
                    << (at < static_cast<int>(steps.size()) ? steps[at] : "the end") << ")") {
      CHECK(SingleNodeLife(at) == expected);
    }
  }
}

TEST_CASE("a gang on two nodes ends the same with a scheduler restart before any of its steps") {
  std::vector<std::string> steps;
  const json expected = GangLife(-1, &steps);
  INFO(expected.dump(1));
  REQUIRE(expected["state"] == "COMPLETED");
  REQUIRE(expected["attempt"] == 1);
  REQUIRE(expected["attempts"][0]["nodes"].size() == 2);
  for (int at = 0; at <= static_cast<int>(steps.size()); ++at) {
    DYNAMIC_SECTION("restart before step " << at << " ("
                    << (at < static_cast<int>(steps.size()) ? steps[at] : "the end") << ")") {
      CHECK(GangLife(at) == expected);
    }
  }
}

TEST_CASE(
    "an upload whose bytes a killed scheduler held whole, but never made a blob, is "
    "finished when the worker announces it again") {
  ServiceHarness h;
  FakeWorker a(h, "node-a");
  const int64_t id = h.Submit(TinySpec("whole"));
  a.Register();
  REQUIRE(RunUntil(h, {&a}, [&] { return a.LaunchOf(id).has_value(); }));
  a.Start(id, 1);
  h.Turn(0);
  // The old scheduler appended the last chunk and was killed before it renamed the part.
  const std::string bytes(3000, 'w');
  const std::string sha = kiln::Sha256Hex(bytes);
  REQUIRE(
      kiln::WriteFileAtomic(h.state_dir() + "/checkpoints/uploads/" + sha + ".part", bytes).ok());
  h.Restart();
  a.Heartbeat();
  h.Turn(250);
  a.Poll();
  h.Turn(0);
  auto done = a.Upload(id, 1, 10, bytes, /*stop_after=*/0);  // nothing left to send
  REQUIRE(done);
  INFO(done->body().dump());
  CHECK(done->envelope.type == "ckpt_done");
  CHECK(done->body()["ok"] == true);
  CHECK(h.Show(id)["checkpoints"].size() == 1);

  // Whole but wrong bytes: thrown away, and the upload starts again from 0.
  const std::string other(2000, 'v');
  const std::string other_sha = kiln::Sha256Hex(other);
  REQUIRE(kiln::WriteFileAtomic(h.state_dir() + "/checkpoints/uploads/" + other_sha + ".part",
                                std::string(2000, 'x'))
              .ok());
  auto again = a.Upload(id, 1, 20, other, /*stop_after=*/0);
  REQUIRE(again);
  CHECK(again->envelope.type == "ckpt_offset");
  CHECK(again->body()["offset"] == 0);
  auto finished = a.Upload(id, 1, 20, other);
  REQUIRE(finished);
  CHECK(finished->body()["ok"] == true);
}
