// The placement table: its codec, and that what it holds survives a reopen of the database.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "scheduler/service/placements.h"

using namespace kiln::service;

namespace {

std::string TempDir() {
  char pattern[] = "/tmp/kiln-placements-XXXXXX";
  return ::mkdtemp(pattern);
}

Placement Sample() {
  Placement p;
  p.ranks = 3;
  p.slots = 6;
  p.memory = int64_t{3} << 30;
  p.gpu_ids = {1, 2, 5};
  p.resume = {7, 120};
  kiln::protocol::LaunchJob launch;
  launch.job_id = 9;
  launch.attempt = 2;
  launch.spec = {{"name", "x"}};
  launch.ranks = 3;
  launch.resume_job = 7;
  launch.resume_step = 120;
  launch.resume_sha256 = std::string(64, 'a');
  launch.gpu_ids = {1, 2, 5};
  launch.hosts = {{"n1", "10.0.0.1", 3, "tcp://10.0.0.1:7071", "key"}};
  launch.launch_secret = "s3cret";
  p.launch = launch;
  p.stop_requested = true;
  p.launched_at = 12345;  // not persisted
  p.launch_sends = 4;     // not persisted
  return p;
}

}  // namespace

TEST_CASE("a placement's persisted fields round-trip through its codec") {
  const Placement p = Sample();
  auto back = DecodePlacement(EncodePlacement(p));
  REQUIRE(back.ok());
  CHECK(back->ranks == 3);
  CHECK(back->slots == 6);
  CHECK(back->memory == p.memory);
  CHECK(back->gpu_ids == std::vector<int>{1, 2, 5});
  CHECK(back->resume == std::make_pair<int64_t, int64_t>(7, 120));
  REQUIRE(back->launch.has_value());
  CHECK(back->launch->job_id == 9);
  CHECK(back->launch->launch_secret == "s3cret");
  CHECK(back->launch->hosts.size() == 1);
  CHECK(back->launch->resume_sha256 == p.launch->resume_sha256);
  CHECK_FALSE(back->acknowledged);
  CHECK(back->stop_requested);
  CHECK_FALSE(back->job_waits_for_exit);
  CHECK(back->launched_at == 0);
  CHECK(back->launch_sends == 0);
  Placement bare;
  auto none = DecodePlacement(EncodePlacement(bare));
  REQUIRE(none.ok());
  CHECK_FALSE(none->launch.has_value());
}

TEST_CASE("a damaged stored placement is an error naming the field, not a guess") {
  auto j = EncodePlacement(Sample());
  j.erase("slots");
  auto decoded = DecodePlacement(j);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message().find("slots") != std::string::npos);
  j = EncodePlacement(Sample());
  j["launch"]["job_id"] = "nine";
  decoded = DecodePlacement(j);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message().find("job_id") != std::string::npos);
}

TEST_CASE("the placement table is rebuilt from the database after a reopen, flags included") {
  const std::string path = TempDir() + "/kiln.db";
  {
    auto store = Store::Open(path);
    REQUIRE(store.ok());
    PlacementTable table(**store);
    REQUIRE(table.Put("n1", {9, 2}, Sample()).ok());
    REQUIRE(table.Put("n2", {9, 2}, Sample()).ok());
    REQUIRE(table.Put("n2", {4, 1}, Placement{}).ok());
    REQUIRE(table.Acknowledge("n1", {9, 2}).ok());
    REQUIRE(table.SetJobWaitsForExit("n1", {9, 2}).ok());
    REQUIRE(table.Acknowledge("n3", {1, 1}).ok());  // absent: nothing to do
    auto removed = table.Erase("n2", {4, 1});
    REQUIRE(removed.ok());
    CHECK(removed->has_value());
    auto again = table.Erase("n2", {4, 1});
    REQUIRE(again.ok());
    CHECK_FALSE(again->has_value());
  }
  auto store = Store::Open(path);
  REQUIRE(store.ok());
  PlacementTable table(**store);
  REQUIRE(table.Load().ok());
  REQUIRE(table.all().size() == 2);
  const Placement* n1 = table.Find("n1", {9, 2});
  REQUIRE(n1 != nullptr);
  CHECK(n1->acknowledged);
  CHECK(n1->job_waits_for_exit);
  CHECK(n1->resume.second == 120);
  const Placement* n2 = table.Find("n2", {9, 2});
  REQUIRE(n2 != nullptr);
  CHECK_FALSE(n2->acknowledged);
  CHECK(table.On("n2").size() == 1);
  auto gone = table.EraseNode("n1");
  REQUIRE(gone.ok());
  CHECK(gone->size() == 1);
  CHECK(table.On("n1").empty());
  PlacementTable reloaded(**store);
  REQUIRE(reloaded.Load().ok());
  CHECK(reloaded.all().size() == 1);
  CHECK(reloaded.Has("n2", {9, 2}));
}
