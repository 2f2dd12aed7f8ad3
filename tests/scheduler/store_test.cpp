#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "scheduler/service/store.h"

using namespace kiln::service;
using kiln::core::JobState;

namespace {

std::string TempDir() {
  char pattern[] = "/tmp/kiln-store-XXXXXX";
  return ::mkdtemp(pattern);
}

JobRecord NewJob(const std::string& request_id) {
  JobRecord j;
  j.request_id = request_id;
  j.name = "job-" + request_id;
  j.spec = {{"name", j.name}};
  j.ranks = 2;
  j.max_retries = 1;
  j.submitted_at = 1000;
  return j;
}

}  // namespace

TEST_CASE("the store keeps jobs, events, nodes, checkpoints and logs across a reopen") {
  const std::string dir = TempDir();
  const std::string path = dir + "/kiln.db";
  int64_t id = 0;
  {
    auto store = Store::Open(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->Begin().ok());
    auto inserted = (*store)->InsertJob(NewJob("r1"));
    REQUIRE(inserted.ok());
    id = *inserted;
    JobRecord job = *(*(*store)->GetJob(id));
    job.state = JobState::kRunning;
    job.attempt = 1;
    job.node = "w1";
    job.progress = {{"step", 10}};
    REQUIRE((*store)->UpdateJob(job).ok());
    REQUIRE((*store)->AddEvent({id, 1001, "PENDING", "RUNNING", "placed on w1"}).ok());
    REQUIRE((*store)->UpsertNode({"w1", 2, 1 << 20, 0, "UP", 1000, 1002, {}, false, ""}).ok());
    REQUIRE((*store)->AddCheckpoint({id, 1, 500, 1, {{"loss", 0.5}}, 123, "ab", 1003, ""}).ok());
    REQUIRE((*store)->AppendLogs(id, 1, 1004, {"hello", "world"}).ok());
    REQUIRE((*store)->AppendLogs(id, 1, 1005, {"again"}).ok());
    REQUIRE((*store)->Commit().ok());
  }
  auto store = Store::Open(path);
  REQUIRE(store.ok());
  auto job = (*store)->GetJob(id);
  REQUIRE(job.ok());
  REQUIRE(job->has_value());
  CHECK((*job)->state == JobState::kRunning);
  CHECK((*job)->node == "w1");
  CHECK((*job)->progress["step"] == 10);
  CHECK((*job)->spec["name"] == "job-r1");
  // Progress merges key by key into the running attempt only: other keys stay, a value replaces
  // the old one whole (objects too), a null is kept, a key that is not a metric name is skipped.
  REQUIRE(*(*store)->MergeJobProgress(id, 1, {{"sync", {{"a", 1}, {"b", 2}}}}));
  CHECK(*(*store)->MergeJobProgress(
      id, 1, {{"loss", nullptr}, {"step", 20}, {"sync", {{"a", 3}}}, {"x\"y", 1}}));
  CHECK_FALSE(*(*store)->MergeJobProgress(id, 2, {{"step", 99}}));  // not that attempt
  auto merged = (*store)->GetJob(id);
  CHECK((*merged)->progress ==
        nlohmann::json{{"step", 20}, {"loss", nullptr}, {"sync", {{"a", 3}}}});
  CHECK((*merged)->node == "w1");
  auto events = (*store)->Events(id);
  REQUIRE(events->size() == 1);
  CHECK((*events)[0].reason == "placed on w1");
  CHECK((*store)->ListNodes()->at(0).name == "w1");
  CHECK((*store)->Checkpoints(id)->at(0).step == 500);
  auto logs = (*store)->Logs(id, LogQuery{0, 10});
  REQUIRE(logs->size() == 3);
  CHECK((*logs)[2].seq == 3);
  CHECK((*logs)[2].line == "again");
  CHECK((*store)->Logs(id, LogQuery{2, 10})->size() == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a rolled-back transaction leaves nothing behind") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  REQUIRE((*store)->Begin().ok());
  REQUIRE((*store)->InsertJob(NewJob("r1")).ok());
  REQUIRE((*store)->Rollback().ok());
  CHECK((*store)->ListJobs(true)->empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("request ids are unique: the same id finds the first job") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  auto first = (*store)->InsertJob(NewJob("same"));
  REQUIRE(first.ok());
  CHECK_FALSE((*store)->InsertJob(NewJob("same")).ok());
  auto found = (*store)->FindJobByRequestId("same");
  REQUIRE(found->has_value());
  CHECK((*found)->id == *first);
  CHECK_FALSE((*store)->FindJobByRequestId("other")->has_value());
  std::filesystem::remove_all(dir);
}

TEST_CASE("unfinished-only listing leaves out terminal jobs") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  auto a = (*store)->InsertJob(NewJob("a"));
  auto b = (*store)->InsertJob(NewJob("b"));
  JobRecord done = *(*(*store)->GetJob(*b));
  done.state = JobState::kCompleted;
  REQUIRE((*store)->UpdateJob(done).ok());
  CHECK((*store)->ListJobs(false)->size() == 1);
  CHECK((*store)->ListJobs(true)->size() == 2);
  CHECK((*store)->ListJobs(false)->at(0).id == *a);
  std::filesystem::remove_all(dir);
}

TEST_CASE("users are found by token digest only, worker keys are revoked by key or node, and the "
          "audit table keeps the newest rows in order") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  REQUIRE((*store)->UpsertUser({"alice", false, "digest-a", 1}).ok());
  REQUIRE((*store)->UpsertUser({"root", true, "digest-r", 2}).ok());
  auto found = (*store)->FindUserByTokenDigest("digest-a");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->name == "alice");
  CHECK_FALSE((*found)->admin);
  // A new token replaces the old one.
  REQUIRE((*store)->UpsertUser({"alice", false, "digest-a2", 3}).ok());
  CHECK_FALSE((*store)->FindUserByTokenDigest("digest-a")->has_value());
  CHECK((*store)->FindUserByTokenDigest("digest-a2")->has_value());
  CHECK(*(*store)->RemoveUser("alice"));
  CHECK_FALSE(*(*store)->RemoveUser("alice"));
  CHECK((*store)->ListUsers()->size() == 1);

  REQUIRE((*store)->AllowWorkerKey({"key-1", "node-a", 1}).ok());
  REQUIRE((*store)->AllowWorkerKey({"key-2", "node-a", 1}).ok());
  REQUIRE((*store)->AllowWorkerKey({"key-3", "node-b", 1}).ok());
  CHECK(*(*store)->RevokeWorkerKey("node-a", 7) == 2);
  CHECK(*(*store)->RevokeWorkerKey("key-3", 8) == 1);
  CHECK(*(*store)->RevokeWorkerKey("key-3", 9) == 0);
  CHECK((*store)->ListWorkerKeys()->empty());
  // Revoked keys are remembered with their node, so a worker holding one can be told so, until
  // the key is admitted again.
  auto revoked = (*store)->ListRevokedWorkerKeys();
  REQUIRE(revoked.ok());
  REQUIRE(revoked->size() == 3);
  CHECK((*revoked)[2].public_key == "key-3");
  CHECK((*revoked)[2].name == "node-b");
  CHECK((*revoked)[2].added_at == 8);
  REQUIRE((*store)->ForgetRevokedWorkerKey("key-3").ok());
  CHECK((*store)->ListRevokedWorkerKeys()->size() == 2);

  for (int i = 0; i < 5; ++i) {
    REQUIRE((*store)->AddAudit({0, i, "u", "a" + std::to_string(i), "t", "ok", ""}).ok());
  }
  auto rows = (*store)->ListAudit(3);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[0].action == "a2");
  CHECK((*rows)[2].action == "a4");
}

TEST_CASE("log queries filter by attempt, time and rank, and find where the last N lines start") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  auto id = (*store)->InsertJob(NewJob("logs"));
  REQUIRE(id.ok());
  REQUIRE((*store)->AppendLogs(*id, 1, 100, {"[rank 0] a", "[rank 1] b", "[kiln-worker] c"}).ok());
  REQUIRE((*store)->AppendLogs(*id, 2, 200, {"[rank 10] d", "[rank 1] e", "[rank 0] f"}).ok());
  auto lines = [&](LogQuery q) {
    std::vector<std::string> out;
    for (const auto& l : *(*store)->Logs(*id, q)) out.push_back(l.line);
    return out;
  };
  LogQuery q;
  q.attempt = 2;
  CHECK(lines(q) == std::vector<std::string>{"[rank 10] d", "[rank 1] e", "[rank 0] f"});
  q = {};
  q.rank = 1;
  CHECK(lines(q) == std::vector<std::string>{"[rank 1] b", "[rank 1] e"});  // not rank 10
  q = {};
  q.since = 150;
  CHECK(lines(q).size() == 3);
  q = {};
  q.limit = 2;
  CHECK(lines(q).size() == 2);
  // The last 2 lines start after seq 4; of rank 0's, the last 1 after seq 5; of everything, the
  // last 0 after the last line.
  CHECK(*(*store)->SeqBeforeLast(*id, {}, 2) == 4);
  LogQuery rank0;
  rank0.rank = 0;
  CHECK(*(*store)->SeqBeforeLast(*id, rank0, 1) == 5);
  CHECK(*(*store)->SeqBeforeLast(*id, {}, 0) == 6);
  CHECK(*(*store)->SeqBeforeLast(*id, {}, 100) == 0);  // fewer than asked: from the start
  std::filesystem::remove_all(dir);
}

TEST_CASE("job listings page by id, filter by user and state, and leave specs unread") {
  const std::string dir = TempDir();
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  for (int i = 0; i < 7; ++i) {
    JobRecord j = NewJob("r" + std::to_string(i));
    j.user = i % 2 ? "bob" : "ann";
    j.state = i == 6 ? JobState::kCompleted : JobState::kPending;
    REQUIRE((*store)->InsertJob(j).ok());
  }
  JobQuery q;
  q.limit = 4;
  auto first = (*store)->ListJobSummaries(q);
  REQUIRE(first->size() == 4);
  CHECK(first->front().spec.is_null());
  q.after_id = first->back().id;
  CHECK((*store)->ListJobSummaries(q)->size() == 2);  // the finished one is left out
  q = {};
  q.user = "bob";
  CHECK((*store)->ListJobSummaries(q)->size() == 3);
  q = {};
  q.states = {"COMPLETED"};
  auto done = (*store)->ListJobSummaries(q);
  REQUIRE(done->size() == 1);
  CHECK(done->front().user == "ann");
  std::filesystem::remove_all(dir);
}
