// The retention policy (pure) and the store's pruning of what only grows.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include "scheduler/core/record_retention.h"
#include "scheduler/service/store.h"

using kiln::core::PruneInterval;
using kiln::core::RetentionCutoff;
using kiln::core::RecordRetention;
using kiln::service::JobRecord;
using kiln::service::Store;

TEST_CASE("retention cutoffs: 0 keeps forever, and pruning runs at a tenth of the shortest") {
  CHECK_FALSE(RetentionCutoff(1000000, 0).has_value());
  CHECK(RetentionCutoff(1000000, 400) == std::optional<kiln::Millis>(999600));
  RecordRetention defaults;
  CHECK(PruneInterval(defaults) == 10 * 60 * 1000);  // capped at 10 minutes
  RecordRetention tight{2000, 0, 0, 0};
  CHECK(PruneInterval(tight) == 1000);  // never below a second
  RecordRetention none{0, 0, 0, 0};
  CHECK(PruneInterval(none) == 10 * 60 * 1000);
}

TEST_CASE("the store prunes logs and events of jobs finished in a window, and old audit rows, in "
          "bounded batches") {
  char pattern[] = "/tmp/kiln-retention-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  auto store = Store::Open(dir + "/kiln.db");
  REQUIRE(store.ok());
  auto add_job = [&](const std::string& name, kiln::Millis finished_at) {
    JobRecord j;
    j.request_id = name;
    j.name = name;
    j.spec = nlohmann::json::object();
    j.state = finished_at > 0 ? kiln::core::JobState::kCompleted : kiln::core::JobState::kRunning;
    j.ranks = 1;
    j.submitted_at = 1;
    j.finished_at = finished_at;
    auto id = (*store)->InsertJob(j);
    REQUIRE(id.ok());
    j.id = *id;
    REQUIRE((*store)->UpdateJob(j).ok());
    REQUIRE((*store)->AppendLogs(*id, 1, 5, {"a", "b", "c"}).ok());
    REQUIRE((*store)->AddEvent({*id, 5, "", "PENDING", "submitted"}).ok());
    return *id;
  };
  const int64_t old_job = add_job("old", 1000);
  const int64_t recent = add_job("recent", 5000);
  const int64_t running = add_job("running", 0);
  // Window [0, 2000): only the old job's rows, two at a time.
  CHECK(*(*store)->PruneJobLogs(0, 2000, 2) == 2);
  CHECK(*(*store)->PruneJobLogs(0, 2000, 2) == 1);
  CHECK(*(*store)->PruneJobLogs(0, 2000, 2) == 0);
  CHECK((*store)->Logs(old_job, {})->empty());
  CHECK((*store)->Logs(recent, {})->size() == 3);
  CHECK((*store)->Logs(running, {})->size() == 3);  // never a running job's
  CHECK(*(*store)->PruneJobEvents(0, 2000, 100) == 1);
  CHECK(*(*store)->PruneJobEvents(2000, 10000, 100) == 1);  // the recent one, in a later window
  CHECK((*store)->Events(running)->size() == 1);

  for (int i = 0; i < 5; ++i) {
    REQUIRE((*store)->AddAudit({0, 100 * i, "u", "a", "t", "ok", ""}).ok());
  }
  CHECK(*(*store)->PruneAudit(250, 100) == 3);  // times 0, 100, 200
  CHECK((*store)->ListAudit(100)->size() == 2);
}
