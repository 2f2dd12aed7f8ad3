// Per-user quotas, set by an admin in the database while the scheduler runs (as
// `kiln-scheduler user set` does): refused submits, jobs that wait, refused uploads; each says
// which limit and how full it is.
#include <catch2/catch.hpp>

#include "scheduler/service/store.h"
#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::ServiceHarness;
using kiln::testing::SmallSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

// As an admin's `kiln-scheduler user set alice ...` does: another connection to the database.
void SetQuota(ServiceHarness& h, const kiln::service::UserQuota& quota) {
  auto store = kiln::service::Store::Open(h.state_dir() + "/kiln.db");
  REQUIRE(store.ok());
  auto set = (*store)->SetUserQuota("alice", quota);
  REQUIRE(set.ok());
  REQUIRE(*set);
}

}  // namespace

TEST_CASE("a submit past max_pending is refused with the limit named") {
  ServiceHarness h;
  SetQuota(h, {2, 0, 0, 0});
  h.Turn(0);
  h.Submit(SmallSpec("one", 1));
  h.Submit(SmallSpec("two", 1));
  auto third = h.Ask(h.alice(), SubmitRequest{"third", SmallSpec("three", 1), {}, {}, "", false});
  REQUIRE(third.envelope.type == "error");
  CHECK(third.body()["message"] ==
        "Quota: user alice has 2 of 2 pending jobs allowed; submit again when some have "
        "started, or cancel some");
  // Once one of her jobs starts, she may submit again.
  FakeWorker w(h, "node-a", 1);
  w.Register();
  h.RunFor(1000);
  auto fourth = h.Ask(h.alice(), SubmitRequest{"fourth", SmallSpec("four", 1), {}, {}, "", false});
  CHECK(fourth.envelope.type == "submit_reply");
}

TEST_CASE(
    "jobs past max_running_ranks or max_gpus wait with a Quota reason, and start when "
    "the limit is raised") {
  ServiceHarness h;
  SetQuota(h, {0, 2, 1, 0});
  FakeWorker w(h, "node-a", 8, 4);
  w.Register();
  h.Turn(0);
  const int64_t first = h.Submit(SmallSpec("first", 2));
  const int64_t second = h.Submit(SmallSpec("second", 2));
  json gpu_spec = SmallSpec("gpus", 1);
  gpu_spec["resources"]["gpus_per_rank"] = 2;
  const int64_t gpus = h.Submit(gpu_spec);
  h.RunFor(1000);
  CHECK(h.Show(first)["state"] == "RUNNING");
  json waiting = h.Show(second);
  CHECK(waiting["state"] == "PENDING");
  CHECK(waiting["reason"] == "Quota: user alice runs 2 of 2 ranks allowed; this job needs 2 more");
  CHECK(h.Show(gpus)["state"] == "PENDING");

  SetQuota(h, {0, 4, 0, 0});
  h.RunFor(1000);
  CHECK(h.Show(second)["state"] == "RUNNING");
  CHECK(h.Show(gpus)["reason"].get<std::string>().rfind("Quota: user alice runs 4 of 4 ranks", 0) ==
        0);
}

TEST_CASE("a checkpoint upload past max_checkpoint_bytes is refused and says so") {
  ServiceHarness h;
  SetQuota(h, {0, 0, 0, 6000});
  FakeWorker w(h, "node-a");
  w.Register();
  h.Turn(0);
  const int64_t id = h.Submit(SmallSpec("saves", 1));
  h.RunFor(500);
  w.Poll();
  REQUIRE(w.LaunchOf(id));
  w.Start(id, 1);
  h.Turn(0);
  auto first = w.Upload(id, 1, 10, std::string(5000, 'a'));
  REQUIRE(first);
  CHECK(first->envelope.type == "ckpt_done");
  CHECK(first->body()["ok"] == true);
  auto second = w.Upload(id, 1, 20, std::string(5000, 'b'));
  REQUIRE(second);
  CHECK(second->body()["ok"] == false);
  CHECK(second->body()["reason"] ==
        "Quota: user alice stores 4.9 KiB of checkpoints, and 4.9 KiB more would pass the 5.9 "
        "KiB allowed; remove some (kiln ckpt rm JOB STEP) or lower checkpoint.keep_last");
  CHECK(h.Show(id)["checkpoints"].size() == 1);
}
