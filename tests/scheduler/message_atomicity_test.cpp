// Every message is handled in a savepoint: a handler that fails after some of its writes leaves
// none of them (nor an "ok" audit row), and the next message is served as if it never came. A
// real SchedulerService in a scratch directory, driven through HandleMessage; the failure is
// injected by an SQLite trigger that refuses one user's submit event, after the job row was
// written.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "common/clock.h"
#include "common/credentials.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "scheduler/service/scheduler_service.h"
#include "scheduler/service/store.h"

using namespace kiln;
using nlohmann::json;

namespace {

json TinySpec(const std::string& name) {
  return {{"name", name},
          {"resources", {{"ranks", 1}}},
          {"model", {{"type", "mlp"}, {"hidden", {4}}}},
          {"data", {{"type", "synthetic"}, {"samples", 8}, {"features", 2}, {"classes", 2}}},
          {"train", {{"epochs", 1}, {"batch_size", 4}, {"loss", "cross_entropy"},
                     {"optimizer", {{"type", "sgd"}, {"lr", 0.1}}}}}};
}

}  // namespace

TEST_CASE("a handler that fails after a write leaves none of it, and the service goes on") {
  char pattern[] = "/tmp/kiln-atomic-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string state = dir + "/state";
  REQUIRE(MakeDirs(state).ok());
  const std::string mallory = NewAccessToken();
  const std::string alice = NewAccessToken();
  {
    auto store = service::Store::Open(state + "/kiln.db");
    REQUIRE(store.ok());
    REQUIRE((*store)->UpsertUser({"mallory", false, AccessTokenDigest(mallory), 0}).ok());
    REQUIRE((*store)->UpsertUser({"alice", false, AccessTokenDigest(alice), 0}).ok());
  }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((state + "/kiln.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TRIGGER refuse_mallory BEFORE INSERT ON job_events "
                         "WHEN NEW.reason LIKE 'submitted by mallory%' "
                         "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  SystemClock clock;
  transport::Context context;
  service::SchedulerOptions options;
  options.listen = "inproc://kiln-atomic-" + std::to_string(::getpid());
  options.state_dir = state;
  auto created = service::SchedulerService::Create(options, clock, context);
  REQUIRE(created.ok());
  auto& scheduler = **created;
  auto submit = [&](const std::string& token, const std::string& request_id) {
    protocol::Envelope e = protocol::MakeEnvelope(
        protocol::SubmitRequest{request_id, TinySpec(request_id), {}, {}, "", false}, "s");
    e.auth = token;
    scheduler.HandleMessage({"client-peer", protocol::EncodeEnvelope(e)}, "curve:client");
  };

  submit(mallory, "m1");  // the job row is written, then its event fails: all of it goes
  submit(alice, "a1");
  submit(mallory, "m2");
  submit(alice, "a2");

  auto store = service::Store::Open(state + "/kiln.db");
  REQUIRE(store.ok());
  auto jobs = (*store)->ListJobs(true);
  REQUIRE(jobs.ok());
  REQUIRE(jobs->size() == 2);
  CHECK((*jobs)[0].request_id == "a1");
  CHECK((*jobs)[1].request_id == "a2");
  for (const auto& job : *jobs) {
    auto events = (*store)->Events(job.id);
    REQUIRE(events->size() == 1);  // each of alice's jobs has its submit event
  }
  auto audit = (*store)->ListAudit(100);
  REQUIRE(audit.ok());
  int ok_submits = 0;
  for (const auto& a : *audit) {
    CHECK(a.user != "mallory");  // nothing of mallory's failed submits was kept as done
    ok_submits += a.action == "submit" && a.outcome == "ok";
  }
  CHECK(ok_submits == 2);
  created->reset();
  std::filesystem::remove_all(dir);
}
