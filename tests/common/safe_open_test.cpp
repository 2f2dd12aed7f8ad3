// Root's opens in folders a job can write: no links at any component, regular files only, one
// link, and never past the recorded size.
#include "common/safe_open.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/file_util.h"

namespace {

struct Scratch {
  Scratch() {
    char pattern[] = "/tmp/kiln-safe-XXXXXX";
    dir = ::mkdtemp(pattern);
  }
  ~Scratch() { std::filesystem::remove_all(dir); }
  std::string dir;
};

}  // namespace

TEST_CASE("a regular file is read within its recorded size") {
  Scratch s;
  REQUIRE(kiln::MakeDirs(s.dir + "/run/checkpoints").ok());
  const std::string file = s.dir + "/run/checkpoints/step-1.ckpt";
  REQUIRE(kiln::WriteFileAtomic(file, "0123456789").ok());
  auto part = kiln::ReadRegularRange(file, 2, 4, 10, s.dir);
  REQUIRE(part.ok());
  CHECK(*part == "2345");
  // Grown since it was recorded: refused.
  auto grown = kiln::ReadRegularRange(file, 0, 4, 8, s.dir);
  REQUIRE_FALSE(grown.ok());
  CHECK(grown.status().message().find("past the 8 recorded") != std::string::npos);
}

TEST_CASE("a link at any component below the trusted folder is refused, naming it") {
  Scratch s;
  const std::string secret = s.dir + "/secret";
  REQUIRE(kiln::WriteFileAtomic(secret, "root only", 0600).ok());
  REQUIRE(kiln::MakeDirs(s.dir + "/run/elsewhere").ok());
  REQUIRE(kiln::WriteFileAtomic(s.dir + "/run/elsewhere/step-1.ckpt", "x").ok());
  // The file itself is a link.
  REQUIRE(kiln::MakeDirs(s.dir + "/run/checkpoints").ok());
  REQUIRE(::symlink(secret.c_str(), (s.dir + "/run/checkpoints/step-2.ckpt").c_str()) == 0);
  auto file_link = kiln::OpenRegularNoFollow(s.dir + "/run/checkpoints/step-2.ckpt", s.dir);
  REQUIRE_FALSE(file_link.ok());
  CHECK(file_link.status().message().find("symbolic link (step-2.ckpt)") != std::string::npos);
  // A folder on the way is a link.
  REQUIRE(::symlink((s.dir + "/run/elsewhere").c_str(), (s.dir + "/run/linked").c_str()) == 0);
  auto dir_link = kiln::OpenRegularNoFollow(s.dir + "/run/linked/step-1.ckpt", s.dir);
  REQUIRE_FALSE(dir_link.ok());
  CHECK(dir_link.status().message().find("symbolic link (linked)") != std::string::npos);
  // Without a trusted folder every component counts, from /.
  CHECK_FALSE(kiln::OpenRegularNoFollow(s.dir + "/run/linked/step-1.ckpt").ok());
  CHECK(kiln::OpenRegularNoFollow(s.dir + "/run/elsewhere/step-1.ckpt").ok());
  CHECK_FALSE(kiln::OpenRegularNoFollow(s.dir + "/run/../secret", s.dir).ok());
}

TEST_CASE("a FIFO, a device and a hard-linked file are refused without blocking") {
  Scratch s;
  const std::string fifo = s.dir + "/fifo.ckpt";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto from_fifo = kiln::OpenRegularNoFollow(fifo, s.dir);
  REQUIRE_FALSE(from_fifo.ok());
  CHECK(from_fifo.status().message().find("not a regular file") != std::string::npos);
  CHECK_FALSE(kiln::OpenRegularNoFollow("/dev/zero").ok());
  const std::string secret = s.dir + "/secret";
  REQUIRE(kiln::WriteFileAtomic(secret, "root only", 0600).ok());
  REQUIRE(::link(secret.c_str(), (s.dir + "/hard.ckpt").c_str()) == 0);
  auto hard = kiln::OpenRegularNoFollow(s.dir + "/hard.ckpt", s.dir);
  REQUIRE_FALSE(hard.ok());
  CHECK(hard.status().message().find("other hard links") != std::string::npos);
}
