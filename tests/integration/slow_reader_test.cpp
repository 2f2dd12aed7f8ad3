// No single user can make the scheduler buffer without bound: a client that pipelines ckpt_read
// and never reads the replies is cut off once its unread replies pass the per-connection budget;
// the scheduler's memory stays bounded, and every other client is served as before.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using kiln::testing::ProcFile;
using kiln::testing::RawClient;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using namespace kiln::protocol;

namespace {

// "VmHWM" (peak resident memory) of /proc/PID/status, in MiB.
int64_t PeakRssMiB(pid_t pid) {
  const std::string status = ProcFile(pid, "status");
  const auto at = status.find("VmHWM:");
  if (at == std::string::npos) return -1;
  return std::stoll(status.substr(at + 6)) / 1024;  // the kernel writes kB
}

}  // namespace

TEST_CASE(
    "a client that pipelines ckpt_read without reading the replies is cut off, and the "
    "scheduler's memory stays bounded while others are served") {
  LocalCluster cluster(1, 30.0, /*with_worker=*/false);
  const std::string alice = cluster.AddUser("alice");
  RawClient worker(cluster, /*as_worker=*/true);
  worker.Send(Encode(AsRootAgent(RegisterWorker{"w", 1, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
  auto submitted =
      cluster.KilnWith(alice, {"submit", cluster.WriteSpec(SyntheticSpec("big", 1, 1, 64))});
  REQUIRE(submitted.exit_code == 0);
  const int64_t id = std::stoll(submitted.out);
  REQUIRE(worker.Expect("launch", 10000));
  worker.Send(Encode(Heartbeat{"w", {{id, 1}}}));

  // An 8 MiB checkpoint: each read of it answers 8 MiB.
  const int64_t kBytes = 8 << 20;
  const std::string bytes(kBytes, 'k');
  const std::string sha = kiln::Sha256Hex(bytes);
  worker.Send(
      Encode(CheckpointBegin{id, 1, 10, 0, nlohmann::json::object(), kBytes, sha, std::nullopt}));
  REQUIRE(worker.Expect("ckpt_offset", 5000));
  worker.Send(Encode(CheckpointChunk{sha, 0}, "", {bytes}));
  auto stored = worker.Expect("ckpt_done", 10000);
  REQUIRE(stored);
  REQUIRE(stored->first.body["ok"] == true);

  const pid_t scheduler = cluster.scheduler_pid();
  const int64_t peak_before = PeakRssMiB(scheduler);
  // alice's own checkpoint, read 300 times over (2.4 GiB of replies), by a client that takes at
  // most one reply off the wire and never reads it.
  RawClient greedy(cluster, false, cluster.TokenOf(alice), /*receive_queue=*/1);
  constexpr int kReads = 300;
  for (int i = 0; i < kReads; ++i) greedy.Send(Encode(CheckpointRead{id, 10, 0, kBytes}));
  REQUIRE(WaitFor(
      [&] {
        auto log = kiln::ReadFile(cluster.dir() + "/scheduler.log");
        return log.ok() && log->find("cut off client connection") != std::string::npos;
      },
      60));
  // The rest of its requests are dropped unanswered, so none of them is read from disk either.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int64_t peak = PeakRssMiB(scheduler);
  INFO("scheduler peak RSS " << peak_before << " MiB before, " << peak << " MiB after");
  CHECK(peak < peak_before + 320);  // unbounded, it would hold up to 2.4 GiB

  // Everyone else is served as before, alice included.
  CHECK(cluster.Kiln({"queue"}).exit_code == 0);
  const std::string out = cluster.dir() + "/pulled";
  auto pull = cluster.KilnWith(alice, {"ckpt", "pull", std::to_string(id), "-o", out});
  INFO(pull.out << pull.err);
  REQUIRE(pull.exit_code == 0);
  CHECK(std::filesystem::file_size(out + "/job-" + std::to_string(id) + "-step-10.pt") ==
        static_cast<uint64_t>(kBytes));

  // The greedy connection: what it gets now is what was sent before the cut, far from all 300,
  // and a new request on it goes unanswered.
  auto drain = [&] {  // reads until nothing has come for `quiet` polls of 200 ms
    int replies = 0;
    kiln::transport::Poller poller;
    poller.AddSocket(greedy.socket());
    for (int quiet = 0; quiet < 10;) {
      REQUIRE(poller.Wait(200).ok());
      bool any = false;
      while (greedy.socket().Receive()) {
        ++replies;
        any = true;
      }
      quiet = any ? 0 : quiet + 1;
    }
    return replies;
  };
  const int replies = drain();
  INFO("the greedy client got " << replies << " replies");
  CHECK(replies < 40);
  greedy.Send(Encode(QueueRequest{}));
  CHECK(drain() == 0);
}
