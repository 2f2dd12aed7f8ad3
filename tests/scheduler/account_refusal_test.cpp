// A launch the agent cannot run as the job's account (the account is gone from the node since it
// last reported) comes back as account_refused: the job waits again without using a retry, the
// node stays in service for other users, and the node's new report keeps the job off it.
#include <catch2/catch.hpp>

#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::ServiceHarness;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

json Spec(const std::string& name) {
  json spec = kiln::testing::SmallSpec(name, 1);
  spec["max_retries"] = 0;
  return spec;
}

}  // namespace

TEST_CASE("a launch refused for its account requeues the job without a retry and keeps the node") {
  ServiceHarness h;
  FakeWorker w(h, "node-a");
  w.Register();
  h.Turn(0);
  const int64_t id = h.Submit(Spec("refused"));
  h.RunFor(500);
  w.Poll();
  auto launch = w.LaunchOf(id);
  REQUIRE(launch);
  CHECK(launch->run_as == std::optional<std::string>("alice"));
  CHECK(launch->allow_root == std::optional<bool>(false));

  // userdel alice on the node after its report: the agent refuses, and reports the account gone.
  w.Send(AccountReport{"node-a", {{"alice", -1}}});
  JobExited refused{
      id, launch->attempt, 126, 0, "Account: node node-a has no account alice", {}, {}, {}};
  refused.account_refused = true;
  w.Exit(refused);
  h.RunFor(500);
  w.Poll();
  json job = h.Show(id);
  INFO(job.dump(2));
  CHECK(job["state"] == "PENDING");  // max_retries 0, yet not FAILED: no retry was used
  CHECK(job["reason"] ==
        "Account: user alice maps to account alice, which node node-a does not have");
  CHECK(w.launches().size() == 1);  // not placed there again

  // The node still takes other users' jobs (a shutting-down node would not).
  const auto other = h.Ask(
      h.root(), SubmitRequest{"req-root", Spec("roots"), std::nullopt, std::nullopt, "", false});
  REQUIRE(other.envelope.type == "submit_reply");
  const int64_t root_job = other.body()["job_id"].get<int64_t>();
  h.RunFor(500);
  w.Poll();
  auto root_launch = w.LaunchOf(root_job);
  REQUIRE(root_launch);
  CHECK(root_launch->run_as == std::optional<std::string>("root"));
  CHECK(root_launch->allow_root == std::optional<bool>(true));

  // useradd alice again: the next report lets the job run there.
  w.Send(AccountReport{"node-a", {{"alice", 1000}}});
  h.RunFor(500);
  w.Poll();
  REQUIRE(w.LaunchOf(id));
  CHECK(w.LaunchOf(id)->attempt == launch->attempt + 1);
}
