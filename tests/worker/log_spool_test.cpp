// The agent's output spool on real files: what was shipped and never acknowledged comes back
// after a restart, numbered as it was, and nothing else does.
#include "worker/agent/log_spool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/file_util.h"

using kiln::agent::LogSpool;

namespace {

struct ScratchWorkDir {
  ScratchWorkDir() {
    char pattern[] = "/tmp/kiln-spool-XXXXXX";
    dir = ::mkdtemp(pattern);
  }
  ~ScratchWorkDir() { std::filesystem::remove_all(dir); }
  std::string RunDir(int64_t job, int64_t attempt) const {
    const std::string d =
        dir + "/jobs/" + std::to_string(job) + "/attempt-" + std::to_string(attempt);
    REQUIRE(kiln::MakeDirs(d).ok());
    return d;
  }
  std::string dir;
};

}  // namespace

TEST_CASE("lines spooled and not acknowledged are recovered with their numbers") {
  ScratchWorkDir work;
  work.RunDir(3, 1);
  work.RunDir(4, 2);
  {
    LogSpool spool(work.dir);
    spool.Append(3, 1, {"a", "b"});
    spool.Append(3, 1, {"c", "d", "e"});
    spool.Acknowledged(3, 1, 2);
    spool.Append(4, 2, {"x", "y"});
    spool.Acknowledged(4, 2, 2);  // all of job 4's
  }
  LogSpool after(work.dir);
  auto recovered = after.Recover();
  REQUIRE(recovered.size() == 1);
  CHECK(recovered[0].job_id == 3);
  CHECK(recovered[0].attempt == 1);
  CHECK(recovered[0].first_line == 2);
  CHECK(recovered[0].lines == std::vector<std::string>{"c", "d", "e"});
  // More lines of a recovered attempt continue its numbering.
  after.Append(3, 1, {"f"});
  after.Acknowledged(3, 1, 5);
  LogSpool third(work.dir);
  auto again = third.Recover();
  REQUIRE(again.size() == 1);
  CHECK(again[0].first_line == 5);
  CHECK(again[0].lines == std::vector<std::string>{"f"});
}

TEST_CASE("a run dir reused by a new attempt starts a new spool") {
  ScratchWorkDir work;
  work.RunDir(7, 1);
  {
    LogSpool spool(work.dir);
    spool.Append(7, 1, {"old 0", "old 1", "old 2"});
  }
  {
    LogSpool fresh(work.dir);  // no Recover: a new attempt of an id seen before
    fresh.Append(7, 1, {"new 0"});
  }
  LogSpool after(work.dir);
  auto recovered = after.Recover();
  REQUIRE(recovered.size() == 1);
  CHECK(recovered[0].first_line == 0);
  CHECK(recovered[0].lines == std::vector<std::string>{"new 0"});
}

TEST_CASE("a spool that is a link or a FIFO is not read back, and appends do not follow links") {
  ScratchWorkDir work;
  const std::string run = work.RunDir(9, 1);
  const std::string secret = work.dir + "/secret";
  REQUIRE(kiln::WriteFileAtomic(secret, "root only\n", 0600).ok());
  REQUIRE(::symlink(secret.c_str(), (run + "/log.spool").c_str()) == 0);
  LogSpool spool(work.dir);
  CHECK(spool.Recover().empty());
  spool.Append(9, 1, {"line"});  // refused: the planted link is not opened
  CHECK(*kiln::ReadFile(secret) == "root only\n");

  const std::string run2 = work.RunDir(9, 2);
  REQUIRE(::mkfifo((run2 + "/log.spool").c_str(), 0600) == 0);
  LogSpool other(work.dir);
  // Attempt 1 has the spool the append above made anew; the FIFO of attempt 2 is not read (nor
  // waited on).
  auto recovered = other.Recover();
  REQUIRE(recovered.size() == 1);
  CHECK(recovered[0].attempt == 1);
  CHECK(recovered[0].lines == std::vector<std::string>{"line"});
}

TEST_CASE("recovery reads back at most the newest kMaxRecoverBytes of unacknowledged lines") {
  ScratchWorkDir work;
  work.RunDir(5, 1);
  const std::string line(16 << 10, 'z');
  const int64_t count = LogSpool::kMaxRecoverBytes / static_cast<int64_t>(line.size()) + 100;
  {
    LogSpool spool(work.dir);
    for (int64_t n = 0; n < count; ++n) spool.Append(5, 1, {line});
  }
  LogSpool after(work.dir);
  auto recovered = after.Recover();
  REQUIRE(recovered.size() == 1);
  const auto& r = recovered[0];
  CHECK(r.first_line + static_cast<int64_t>(r.lines.size()) == count);
  CHECK(r.first_line > 0);
  CHECK(static_cast<int64_t>(r.lines.size()) * static_cast<int64_t>(line.size()) <=
        LogSpool::kMaxRecoverBytes);
}

TEST_CASE("a spool hard-linked to another file is neither read back nor written") {
  ScratchWorkDir work;
  const std::string run = work.RunDir(11, 1);
  const std::string secret = work.dir + "/secret";
  REQUIRE(kiln::WriteFileAtomic(secret, "root only\n", 0600).ok());
  REQUIRE(::link(secret.c_str(), (run + "/log.spool").c_str()) == 0);
  LogSpool spool(work.dir);
  CHECK(spool.Recover().empty());
  spool.Append(11, 1, {"line"});
  CHECK(*kiln::ReadFile(secret) == "root only\n");
}
