// Job arrays through the real scheduler (harness): one request makes N tasks, %MAX bounds how
// many run at once, each task gets its index, cancel/hold/priority work on the array and on
// ARRAY_INDEX, depends_on may name an array, and all of it survives a kill -9.
#include <catch2/catch.hpp>
#include <deque>
#include <set>

#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::Received;
using kiln::testing::ServiceHarness;
using kiln::testing::SmallSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

int64_t SubmitArray(ServiceHarness& h, const json& spec, const std::string& array) {
  SubmitRequest request{"array-" + array, spec, {}, {}, "", false};
  request.array = array;
  Received r = h.Ask(h.alice(), request);
  REQUIRE(r.envelope.type == "submit_reply");
  return r.body()["job_id"].get<int64_t>();
}

json IndexedSpec() {
  json spec = SmallSpec("task-${array_index}", 1);
  spec["data"]["seed"] = "${array_index}";
  return spec;
}

// Plays the worker: starts every launch, and ends the oldest running attempt each round, until
// `done` or `rounds` run out. Returns the most attempts it had running at once.
struct Runner {
  ServiceHarness& h;
  FakeWorker& w;
  std::set<std::pair<int64_t, int64_t>> seen;
  std::deque<std::pair<int64_t, int64_t>> running;
  std::vector<LaunchJob> started;
  size_t most = 0;

  bool RunUntil(const std::function<bool()>& done, int rounds = 400, bool finish = true) {
    for (int i = 0; i < rounds; ++i) {
      if (done()) return true;
      h.Turn(250);
      w.Poll();
      for (const auto& l : w.launches()) {
        if (!seen.insert({l.job_id, l.attempt}).second) continue;
        w.Start(l.job_id, l.attempt);
        running.push_back({l.job_id, l.attempt});
        started.push_back(l);
      }
      h.Turn(0);
      most = std::max(most, running.size());
      if (finish && !running.empty()) {
        auto [job, attempt] = running.front();
        running.pop_front();
        w.Exit({job, attempt, 0, 0, "", std::nullopt, std::nullopt, std::nullopt});
      }
    }
    return done();
  }
};

}  // namespace

TEST_CASE("an array runs each index once, at most MAX at once, and rolls up COMPLETED") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 4);
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-9%2");
  json shown = h.Show(array);
  CHECK(shown["state"] == "PENDING");
  CHECK(shown["array"]["tasks"] == 10);
  CHECK(shown["array"]["pending_count"] == 10);
  CHECK(shown["array"]["pending"] == "0-9");
  w.Register();

  Runner run{h, w};
  // Two start, and the array says why the third waits though slots are free.
  REQUIRE(run.RunUntil([&] { return run.started.size() == 2; }, 20, false));
  h.Turn(250);
  CHECK(h.Show(array)["reason"].get<std::string>().rfind("ArrayLimit: 2 of array", 0) == 0);
  REQUIRE(run.RunUntil([&] { return h.Show(array)["state"] == "COMPLETED"; }));
  CHECK(run.most <= 2);
  CHECK(h.Show(array)["reason"] == "array: 10 completed");

  std::set<int64_t> indices;
  for (const auto& l : run.started) {
    REQUIRE(l.array_job == array);
    REQUIRE(l.array_index);
    indices.insert(*l.array_index);
    // The task's spec has its index in: a string field, and a number from "${array_index}".
    CHECK(l.spec["name"] == "task-" + std::to_string(*l.array_index));
    CHECK(l.spec["data"]["seed"] == *l.array_index);
    json task = h.Show(l.job_id);
    CHECK(task["array_job"] == array);
    CHECK(task["state"] == "COMPLETED");
  }
  CHECK(indices.size() == 10);
  CHECK(run.started.size() == 10);  // no index twice
}

TEST_CASE("an array survives a kill -9 in the middle: every index runs once") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 3);
  w.Register();
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-19:2%3");  // 10 tasks
  Runner run{h, w};
  REQUIRE(run.RunUntil([&] { return run.started.size() >= 5; }));
  h.Restart();
  w.Register();
  REQUIRE(run.RunUntil([&] { return h.Show(array)["state"] == "COMPLETED"; }));
  std::multiset<int64_t> indices;
  for (const auto& l : run.started) indices.insert(*l.array_index);
  CHECK(indices.size() == 10);
  CHECK(std::set<int64_t>(indices.begin(), indices.end()).size() == 10);
  CHECK(*indices.rbegin() == 18);
  CHECK(run.most <= 3);
}

TEST_CASE("cancel, hold and priority act on a whole array or on ARRAY_INDEX") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 1);
  w.Register();
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-5");
  Runner run{h, w};
  REQUIRE(run.RunUntil([&] { return run.started.size() == 1; }, 20, false));

  // One pending task, by its index: it gets a row of its own, CANCELLED.
  Received one = h.Ask(h.alice(), CancelRequest{array, 4});
  REQUIRE(one.envelope.type == "cancel_reply");
  CHECK(one.body()["state"] == "CANCELLED");
  CHECK(h.Show(array)["array"]["pending"] == "1-3,5");

  // A task index the array does not have, and an index on a job that is not an array.
  Received missing = h.Ask(h.alice(), CancelRequest{array, 40});
  CHECK(missing.envelope.type == "error");
  CHECK_THAT(missing.body()["message"].get<std::string>(),
             Catch::Contains("has no task 40") && Catch::Contains("0-5"));

  // Hold the array: nothing more starts; priority reaches the running task too.
  Received held = h.Ask(h.alice(), JobAdminRequest{array, "hold", 0, std::nullopt});
  REQUIRE(held.envelope.type == "data");
  CHECK(held.body()["data"]["held"] == true);
  Received pri = h.Ask(h.alice(), JobAdminRequest{array, "priority", -5, std::nullopt});
  REQUIRE(pri.envelope.type == "data");
  CHECK(h.Show(run.started[0].job_id)["priority"] == -5);
  REQUIRE_FALSE(run.RunUntil([&] { return run.started.size() > 1; }, 12));
  CHECK(h.Show(array)["reason"].get<std::string>().rfind("Held:", 0) == 0);

  // A pending task released by index alone would not start while the array is held: release all.
  REQUIRE(h.Ask(h.alice(), JobAdminRequest{array, "release", 0, std::nullopt}).envelope.type ==
          "data");
  REQUIRE(run.RunUntil([&] { return run.started.size() == 2; }, 20, false));

  // Cancel the whole array: the running task is stopped, the rest dropped.
  Received all = h.Ask(h.alice(), CancelRequest{array, std::nullopt});
  REQUIRE(all.envelope.type == "cancel_reply");
  CHECK(all.body()["state"] == "CANCELLED");
  json shown = h.Show(array);
  CHECK(shown["state"] == "CANCELLED");
  CHECK_THAT(shown["reason"].get<std::string>(), Catch::Contains("cancelled"));
  w.Poll();
  CHECK_FALSE(w.kills().empty());

  // A task that has ended cannot be cancelled again.
  Received again = h.Ask(h.root(), CancelRequest{array, 1});
  CHECK(again.envelope.type == "error");
}

TEST_CASE("a job that depends on an array starts once every task has completed") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 2);
  w.Register();
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "1-4");
  json after = SmallSpec("after", 1);
  after["depends_on"] = {array};
  const int64_t dependent = h.Submit(after);
  Runner run{h, w};
  REQUIRE(run.RunUntil([&] { return h.Show(array)["state"] == "COMPLETED"; }));
  for (const auto& l : run.started) CHECK(l.job_id != dependent);
  REQUIRE(run.RunUntil([&] { return h.Show(dependent)["state"] == "COMPLETED"; }));
}

TEST_CASE("a failed task fails the array, and its dependents") {
  ServiceHarness h;
  FakeWorker w(h, "node-a", 2);
  w.Register();
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-2");
  json after = SmallSpec("after", 1);
  after["depends_on"] = {array};
  const int64_t dependent = h.Submit(after);
  Runner run{h, w};
  REQUIRE(run.RunUntil([&] { return run.started.size() == 2; }, 20, false));
  const LaunchJob first = run.started[0];
  run.running.erase(run.running.begin());
  w.Exit({first.job_id, first.attempt, 1, 0, "exit 1", std::nullopt, std::nullopt, std::nullopt});
  REQUIRE(run.RunUntil([&] { return h.Show(array)["state"] != "PENDING"; }));
  CHECK(h.Show(array)["state"] == "FAILED");
  CHECK(h.Show(array)["reason"] == "array: 2 completed, 1 failed");
  h.RunFor(1000);
  CHECK(h.Show(dependent)["state"] == "FAILED");
}

TEST_CASE("bad arrays are refused naming the field") {
  ServiceHarness h;
  h.Turn(0);
  auto refuse = [&](const json& spec, const std::string& array) {
    SubmitRequest request{"bad-" + array, spec, {}, {}, "", false};
    request.array = array;
    Received r = h.Ask(h.alice(), request);
    REQUIRE(r.envelope.type == "error");
    return r.body().dump();
  };
  CHECK_THAT(refuse(IndexedSpec(), "9-3"), Catch::Contains("array: \\\"9-3\\\" is an empty range"));
  CHECK_THAT(refuse(IndexedSpec(), "0-9%0"), Catch::Contains("array: after '%'"));
  CHECK_THAT(refuse(IndexedSpec(), ""), Catch::Contains("array:"));
  // The last task's spec is checked with its index in: 0 samples is not a data set.
  json spec = IndexedSpec();
  spec["data"]["samples"] = "${array_index}";
  CHECK_THAT(refuse(spec, "0-3"), Catch::Contains("task 0: data.samples"));
  // Nothing was queued.
  Received q = h.Ask(h.alice(), QueueRequest{});
  CHECK(q.body()["data"].empty());
}

TEST_CASE("a task's request id cannot be taken, and a refused request makes no task row") {
  ServiceHarness h;
  h.Turn(0);
  Received taken = h.Ask(h.alice(), SubmitRequest{"r#0", SmallSpec("x", 1), {}, {}, "", false});
  REQUIRE(taken.envelope.type == "error");
  CHECK_THAT(taken.body()["message"].get<std::string>(), Catch::Contains("without '#'"));
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-5");
  // Releasing a task of an array that is not held is refused, and index 5 stays pending.
  Received refused = h.Ask(h.alice(), JobAdminRequest{array, "release", 0, 5});
  REQUIRE(refused.envelope.type == "error");
  CHECK_THAT(refused.body()["message"].get<std::string>(), Catch::Contains("already not held"));
  CHECK(h.Show(array)["array"]["pending"] == "0-5");
  Received shown = h.Ask(h.alice(), ShowRequest{array, 5});
  CHECK(shown.envelope.type == "error");
  CHECK_THAT(shown.body()["message"].get<std::string>(), Catch::Contains("has not started yet"));
}

TEST_CASE("an admin's hold on a task stays until an admin releases it") {
  ServiceHarness h;
  h.Turn(0);
  const int64_t array = SubmitArray(h, IndexedSpec(), "0-5");
  REQUIRE(h.Ask(h.root(), JobAdminRequest{array, "hold", 0, 2}).envelope.type == "data");
  Received mine = h.Ask(h.alice(), JobAdminRequest{array, "release", 0, 2});
  CHECK(mine.envelope.type == "error");
  // The owner holds and releases the whole array: the admin's hold on task 2 stays.
  REQUIRE(h.Ask(h.alice(), JobAdminRequest{array, "hold", 0, std::nullopt}).envelope.type ==
          "data");
  REQUIRE(h.Ask(h.alice(), JobAdminRequest{array, "release", 0, std::nullopt}).envelope.type ==
          "data");
  Received task = h.Ask(h.alice(), ShowRequest{array, 2});
  REQUIRE(task.envelope.type == "data");
  CHECK(task.body()["data"]["held"] == true);
  CHECK(h.Ask(h.root(), JobAdminRequest{array, "release", 0, 2}).envelope.type == "data");
}

TEST_CASE(
    "an array whose dependency fails is FAILED, and fields the scheduler reads do not "
    "take the index") {
  ServiceHarness h;
  h.Turn(0);
  const int64_t first = h.Submit(SmallSpec("first", 1));
  REQUIRE(h.Ask(h.alice(), CancelRequest{first, std::nullopt}).envelope.type == "cancel_reply");
  json spec = IndexedSpec();
  spec["depends_on"] = {first};
  const int64_t array = SubmitArray(h, spec, "0-3");
  h.RunFor(1000);
  json shown = h.Show(array);
  CHECK(shown["state"] == "FAILED");
  CHECK_THAT(shown["reason"].get<std::string>(), Catch::StartsWith("DependencyFailed: job "));
  CHECK(shown["array"]["pending"] == "");

  json indexed = IndexedSpec();
  indexed["priority"] = "${array_index}";
  SubmitRequest request{"pri", indexed, {}, {}, "", false};
  request.array = "0-3";
  Received r = h.Ask(h.alice(), request);
  REQUIRE(r.envelope.type == "error");
  CHECK_THAT(r.body().dump(), Catch::Contains("task 0: priority"));
}
