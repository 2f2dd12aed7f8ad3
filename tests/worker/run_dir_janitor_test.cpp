// Which run dirs a worker removes: only those of attempts that ended long ago.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/file_util.h"
#include "worker/agent/run_dir_janitor.h"

using namespace kiln::agent;

TEST_CASE("run dirs in use or changed recently stay, the others go, and 0 keeps everything") {
  std::vector<RunDirInfo> dirs = {{1, 1, "/w/jobs/1/attempt-1", 1000},
                                  {1, 2, "/w/jobs/1/attempt-2", 1000},
                                  {2, 1, "/w/jobs/2/attempt-1", 9500}};
  auto gone = RunDirsToRemove(dirs, {{1, 2}}, 10000, 5000);
  CHECK(gone == std::vector<std::string>{"/w/jobs/1/attempt-1"});
  CHECK(RunDirsToRemove(dirs, {}, 10000, 0).empty());
  CHECK(JanitorInterval(86400000) == 600000);
  CHECK(JanitorInterval(2000) == 1000);
}

TEST_CASE("the janitor lists only numbered attempt dirs, removes them and their empty job dir, "
          "and never follows a link out of the work dir") {
  char pattern[] = "/tmp/kiln-janitor-XXXXXX";
  const std::string work = ::mkdtemp(pattern);
  REQUIRE(kiln::MakeDirs(work + "/jobs/7/attempt-1/checkpoints").ok());
  REQUIRE(kiln::WriteFileAtomic(work + "/jobs/7/attempt-1/output.log", "x").ok());
  REQUIRE(kiln::MakeDirs(work + "/jobs/7/notes").ok());
  REQUIRE(kiln::MakeDirs(work + "/jobs/x/attempt-1").ok());
  REQUIRE(kiln::MakeDirs(work + "/outside").ok());
  REQUIRE(kiln::WriteFileAtomic(work + "/outside/keep", "mine").ok());
  REQUIRE(::symlink((work + "/outside").c_str(), (work + "/jobs/7/attempt-1/link").c_str()) == 0);
  REQUIRE(kiln::MakeDirs(work + "/jobs/8/attempt-3").ok());
  auto dirs = ListRunDirs(work);
  REQUIRE(dirs.size() == 2);
  for (const auto& d : dirs) {
    CHECK(((d.job_id == 7 && d.attempt == 1) || (d.job_id == 8 && d.attempt == 3)));
    CHECK(d.modified_ms > 0);
  }
  CHECK(RemoveRunDirs({work + "/jobs/7/attempt-1", work + "/jobs/8/attempt-3"}) == 2);
  CHECK_FALSE(std::filesystem::exists(work + "/jobs/7/attempt-1"));
  CHECK(std::filesystem::exists(work + "/jobs/7/notes"));  // not empty: kept
  CHECK_FALSE(std::filesystem::exists(work + "/jobs/8"));  // empty: gone
  CHECK(std::filesystem::exists(work + "/outside/keep"));  // the link was removed, not followed
}
