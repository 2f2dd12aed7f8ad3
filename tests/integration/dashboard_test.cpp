// The dashboard in a real browser: headless Chromium (Debian's) logs in through the page's form,
// opens a running job's page, and the DOM shows a loss chart with points that grow while the
// job trains; another user opening the same page sees the scheduler's refusal and no job. A
// screenshot of the job page is kept in test-artifacts/ of the test's working directory.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/integration/local_cluster.h"

using kiln::testing::LocalCluster;
using kiln::testing::RunCommand;
using kiln::testing::SyntheticSpec;
using nlohmann::json;

TEST_CASE("the dashboard shows a running job's loss curve growing in Chromium, and refuses others") {
  LocalCluster cluster(/*slots=*/2);
  cluster.StopScheduler();
  cluster.SetSchedulerArgs({"--http", "127.0.0.1:0"});
  cluster.StartScheduler();
  const std::string url = cluster.HttpUrl();
  const std::string dana = cluster.AddUser("dana");
  const std::string eve = cluster.AddUser("eve");

  // Long enough to keep training while the browser watches: reports every few steps.
  json spec = SyntheticSpec("curves", 1, 100000, 4096);
  const std::string spec_file = cluster.WriteSpec(spec, "curves.json");
  auto submitted = cluster.KilnWith(dana, {"submit", spec_file});
  REQUIRE(submitted.exit_code == 0);
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  REQUIRE(cluster.WaitForJob(
              std::stoll(job), [](const json& j) { return j["state"] == "RUNNING"; },
              60)["state"] == "RUNNING");

  ::mkdir("test-artifacts", 0755);
  const std::string screenshot = "test-artifacts/dashboard-job.png";
  ::unlink(screenshot.c_str());
  auto browser = RunCommand({"/usr/bin/python3",
                             std::string(KILN_SOURCE_DIR) + "/tests/integration/dashboard_browser.py",
                             url, job, cluster.TokenOf(dana), cluster.TokenOf(eve), screenshot},
                            300);
  INFO(browser.out << browser.err);
  REQUIRE(browser.exit_code == 0);
  json seen = json::parse(browser.out);
  REQUIRE(!seen.contains("error"));
  CHECK(seen["points_first"].get<int>() > 0);
  CHECK(seen["points_later"].get<int>() > seen["points_first"].get<int>());
  CHECK(seen["title"] == "Job " + job + ": curves");
  CHECK(seen["state"] == "RUNNING");
  CHECK(seen["who"] == "dana");
  CHECK(seen["cancel_visible"] == true);
  CHECK(seen["logs_chars"].get<int>() > 0);
  // The token lives in this tab's sessionStorage only: not in the URL, cookies or localStorage.
  CHECK(seen["token_in_session"] == true);
  CHECK(seen["url"].get<std::string>().find(cluster.TokenOf(dana)) == std::string::npos);
  CHECK(seen["token_in_local"] == 0);
  CHECK(seen["cookies"] == "");
  CHECK(seen["other_who"] == "eve");
  CHECK_THAT(seen["refusal"].get<std::string>(), Catch::Contains("job " + job));
  CHECK(seen["other_job_hidden"] == true);
  struct stat shot {};
  REQUIRE(::stat(screenshot.c_str(), &shot) == 0);
  CHECK(shot.st_size > 20000);
  CHECK(cluster.Kiln({"cancel", job}).exit_code == 0);
}
