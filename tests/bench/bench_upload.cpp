// kiln-bench-upload: uploads checkpoint-sized files to a real scheduler through the agent's own
// CheckpointUploader (registering as a worker named "bench-uploader" with 1 slot), and prints the
// throughput of each upload. Used by scripts/bench-checkpoint.sh.
//   kiln-bench-upload --scheduler ADDR --job ID --mb 100 --repeat 3 [--dir /tmp]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>

#include <CLI/CLI.hpp>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"
#include "worker/agent/checkpoint_uploader.h"

using namespace kiln;

int main(int argc, char** argv) {
  CLI::App app{"kiln-bench-upload"};
  std::string scheduler, dir = "/tmp";
  int64_t job_id = 0, mb = 100;
  int repeat = 3;
  std::string server_key, key_file;
  app.add_option("--scheduler", scheduler)->required();
  app.add_option("--server-key", server_key, "the scheduler's public key or server.pub")->required();
  app.add_option("--key-file", key_file, "an admitted worker keypair (worker-cluster.key)")
      ->required();
  app.add_option("--job", job_id, "job the checkpoints are recorded under")->required();
  app.add_option("--mb", mb)->capture_default_str();
  app.add_option("--repeat", repeat)->capture_default_str();
  app.add_option("--dir", dir)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  SystemClock clock;
  transport::Context context;
  transport::Socket socket(context, transport::SocketKind::kDealer);
  (void)socket.SetRoutingId("worker:bench-uploader");
  auto server = transport::ResolvePublicKey(server_key);
  auto keys = transport::LoadKeyPair(key_file);
  if (!server.ok() || !keys.ok() || !socket.MakeCurveClient(*server, *keys).ok() ||
      !socket.Connect(scheduler).ok()) {
    std::fprintf(stderr, "cannot connect securely to %s\n", scheduler.c_str());
    return 2;
  }
  auto send = [&](transport::Frames f) { (void)socket.Send(f); };
  send(protocol::Encode(protocol::RegisterWorker{"bench-uploader", 1, 0, 0, {}, {}, "", ""}));

  std::string folder_template = dir + "/kiln-bench-upload-XXXXXX";
  if (::mkdtemp(folder_template.data()) == nullptr) return 2;
  const std::string path = folder_template + "/checkpoint.pt";
  {
    std::string block(1 << 20, '\0');
    std::mt19937_64 rng(42);
    FILE* f = std::fopen(path.c_str(), "wb");
    for (int64_t i = 0; i < mb; ++i) {
      for (auto& c : block) c = static_cast<char>(rng());
      std::fwrite(block.data(), 1, block.size(), f);
    }
    std::fclose(f);
  }
  agent::CheckpointUploader uploader(clock, send, [](int64_t, int64_t, const std::string& line) {
    std::fprintf(stderr, "upload: %s\n", line.c_str());
  });
  Millis last_heartbeat = 0;
  auto pump = [&](int wait_ms) {
    transport::Poller poller;
    poller.AddSocket(socket);
    (void)poller.Wait(wait_ms);
    while (auto frames = socket.Receive()) {
      auto e = protocol::DecodeEnvelope((*frames)[0]);
      if (!e.ok()) continue;
      if (e->type == protocol::CheckpointOffset::kType) {
        uploader.OnOffset(*protocol::DecodeBody<protocol::CheckpointOffset>(*e));
      } else if (e->type == protocol::CheckpointDone::kType) {
        uploader.OnDone(*protocol::DecodeBody<protocol::CheckpointDone>(*e));
      }
    }
    if (clock.MonotonicMs() - last_heartbeat > 1000) {
      last_heartbeat = clock.MonotonicMs();
      send(protocol::Encode(protocol::Heartbeat{"bench-uploader", {}}));
    }
  };
  for (int i = 0; i < 20; ++i) pump(50);  // registered by now

  for (int i = 0; i < repeat; ++i) {
    // New content each time (else the scheduler already holds the blob and nothing is sent).
    int fd = ::open(path.c_str(), O_WRONLY);
    uint64_t marker = static_cast<uint64_t>(::getpid()) * 1000 + static_cast<uint64_t>(i);
    (void)!::pwrite(fd, &marker, sizeof marker, 0);
    ::close(fd);
    auto sha = Sha256OfFile(path);
    const auto start = std::chrono::steady_clock::now();
    uploader.Enqueue({job_id, 1, 1'000'000 + i, 0, nlohmann::json::object(), path, mb << 20, *sha,
                      false, 1000});
    while (!uploader.idle()) pump(10);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("upload %d: %lld MB in %.3f s = %.1f MB/s\n", i, static_cast<long long>(mb), s,
                static_cast<double>(mb << 20) / 1e6 / s);
    std::fflush(stdout);
  }
  ::unlink(path.c_str());
  ::rmdir(folder_template.c_str());
  return 0;
}
