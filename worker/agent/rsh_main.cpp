// kiln-rsh: OpenMPI's rsh agent for gangs on several nodes (mpirun --mca plm_rsh_agent kiln-rsh).
// mpirun runs `kiln-rsh HOST COMMAND...` to start its daemon on HOST; instead of ssh, kiln-rsh
// asks the kiln agent on HOST to run COMMAND through /bin/sh, over CURVE to that agent's key,
// showing the attempt's launch secret, and exits with the command's status (the daemon detaches,
// so that is soon). Where to reach each host comes from $KILN_LAUNCH_FILE, which the leader's
// agent wrote (0600) for this attempt.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/curve.h"
#include "common/transport/socket.h"

namespace {

constexpr int kGiveUpAfterMs = 30000;  // the member's launch may still be on its way, or fetching
constexpr int kRetryEveryMs = 200;

int Fail(const std::string& message) {
  std::fprintf(stderr, "kiln-rsh: %s\n", message.c_str());
  return 255;  // what ssh returns when it cannot run the command
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kiln;
  if (argc < 3) return Fail("usage: kiln-rsh HOST COMMAND... (run by mpirun)");
  const std::string host = argv[1];
  std::string command;
  for (int i = 2; i < argc; ++i) command += (i > 2 ? " " : "") + std::string(argv[i]);
  const char* file = std::getenv("KILN_LAUNCH_FILE");
  if (file == nullptr) return Fail("KILN_LAUNCH_FILE is not set: kiln-rsh runs under kiln's mpirun");
  auto text = ReadFile(file);
  if (!text.ok()) return Fail(text.status().message());
  auto launch = nlohmann::json::parse(*text, nullptr, false);
  if (!launch.is_object() || !launch.contains("hosts") || !launch["hosts"].contains(host)) {
    return Fail("host " + host + " is not in " + file);
  }
  const auto& target = launch["hosts"][host];
  auto own = transport::NewCurveKeyPair();
  if (!own.ok()) return Fail(own.status().message());
  transport::Context context;
  transport::Socket socket(context, transport::SocketKind::kDealer);
  if (!socket.MakeCurveClient(target.value("public_key", ""), *own).ok() ||
      !socket.Connect(target.value("endpoint", "")).ok()) {
    return Fail("cannot reach the kiln agent of " + host + " at " + target.value("endpoint", ""));
  }
  const protocol::RemoteExec exec{launch.value("job_id", int64_t{0}),
                                  launch.value("attempt", int64_t{0}),
                                  launch.value("secret", ""), command};
  std::string last_refusal;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now() - start).count();
  };
  while (elapsed_ms() < kGiveUpAfterMs) {
    (void)socket.Send(protocol::Encode(exec));
    // Wait for this attempt's answer; the daemon takes a moment to detach.
    while (elapsed_ms() < kGiveUpAfterMs) {
      transport::Poller poller;
      poller.AddSocket(socket);
      (void)poller.Wait(1000);
      auto frames = socket.Receive();
      if (!frames) continue;
      auto e = protocol::DecodeEnvelope((*frames)[0]);
      if (!e.ok()) return Fail("bad answer from the agent of " + host);
      if (e->type == protocol::RemoteExit::kType) {
        auto exit = protocol::DecodeBody<protocol::RemoteExit>(*e);
        if (!exit.ok()) return Fail(exit.status().message());
        for (const auto& line : exit->output) std::fprintf(stderr, "%s\n", line.c_str());
        return static_cast<int>(exit->exit_code);
      }
      auto error = protocol::DecodeBody<protocol::ErrorReply>(*e);
      if (!error.ok()) return Fail("unexpected answer from the agent of " + host);
      if (error->code != StatusCodeName(StatusCode::kUnavailable)) {
        return Fail("the agent of " + host + " refused: " + error->message);
      }
      last_refusal = error->message;
      break;  // not ready there yet: ask again
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kRetryEveryMs));
  }
  return Fail("the agent of " + host + " did not start the daemon within " +
              std::to_string(kGiveUpAfterMs / 1000) + " s" +
              (last_refusal.empty() ? "" : ": " + last_refusal));
}
