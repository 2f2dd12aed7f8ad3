// Root's opens in folders a job can write: no links at any component, regular files only, one
// link, and never past the recorded size.
#include "common/safe_open.h"

#include <fcntl.h>
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

TEST_CASE("removals in a job's folder never go through a link, nor touch another account's file") {
  Scratch s;
  REQUIRE(kiln::MakeDirs(s.dir + "/work/run/checkpoints").ok());
  REQUIRE(kiln::MakeDirs(s.dir + "/victim").ok());
  for (const char* name : {"a.pt", "b.pt", "keep.txt"}) {
    REQUIRE(kiln::WriteFileAtomic(s.dir + "/victim/" + name, "secret").ok());
  }
  const std::string work = s.dir + "/work";
  // The job made its checkpoint folder a link to the victim's folder after reporting a file.
  std::filesystem::remove_all(work + "/run/checkpoints");
  std::filesystem::create_directory_symlink(s.dir + "/victim", work + "/run/checkpoints");
  auto unlinked = kiln::UnlinkNoFollow(work + "/run/checkpoints/a.pt", work);
  REQUIRE_FALSE(unlinked.ok());
  CHECK(unlinked.message().find("goes through a symbolic link (checkpoints)") != std::string::npos);
  kiln::RemoveAllButNewestNoFollow(work + "/run/checkpoints", work, ".pt", 0, {});
  CHECK(std::filesystem::exists(s.dir + "/victim/a.pt"));
  CHECK(std::filesystem::exists(s.dir + "/victim/b.pt"));

  // In a real folder: only *.pt beyond the newest `keep`, never one in use or another account's.
  std::filesystem::remove(work + "/run/checkpoints");
  REQUIRE(kiln::MakeDirs(work + "/run/checkpoints").ok());
  const std::string dir = work + "/run/checkpoints";
  for (int i = 1; i <= 4; ++i) {
    REQUIRE(kiln::WriteFileAtomic(dir + "/step-" + std::to_string(i) + ".pt", "x").ok());
    struct timespec times[2] = {{1000 + i, 0}, {1000 + i, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (dir + "/step-" + std::to_string(i) + ".pt").c_str(), times, 0) ==
            0);
  }
  REQUIRE(::chown((dir + "/step-1.pt").c_str(), 65534, 65534) == 0);  // not the job's
  kiln::RemoveAllButNewestNoFollow(dir, work, ".pt", 1, {dir + "/step-2.pt"}, ::geteuid());
  CHECK(std::filesystem::exists(dir + "/step-1.pt"));  // another account's
  CHECK(std::filesystem::exists(dir + "/step-2.pt"));  // in use
  CHECK_FALSE(std::filesystem::exists(dir + "/step-3.pt"));
  CHECK(std::filesystem::exists(dir + "/step-4.pt"));  // the newest
  auto others = kiln::UnlinkNoFollow(dir + "/step-1.pt", work, ::geteuid());
  REQUIRE_FALSE(others.ok());
  CHECK(others.message().find("belongs to another account") != std::string::npos);
  CHECK(kiln::UnlinkNoFollow(dir + "/step-4.pt", work, ::geteuid()).ok());
  CHECK_FALSE(std::filesystem::exists(dir + "/step-4.pt"));
}
