// kiln-bench-submit: load generator for a running kiln-scheduler.
//   --mode submit:  N clients (threads, one DEALER each) keep `window` submits in flight until
//                   `jobs` are acknowledged; prints acknowledged submits per second.
//   --mode noop:    the same with `show` of a job that does not exist (no durable write): the
//                   ceiling the protocol and loop give, the baseline for submits.
//   --mode burst:   one client sends `jobs` held submits with request ids burst-0..N-1 (as fast as
//                   the pipeline allows) and prints one line "REQUEST_ID JOB_ID DUPLICATE" per
//                   acknowledgement until all are acknowledged or `--seconds` pass; run it again
//                   with the same ids to see what a retrying client gets back.
//   --mode latency: one job at a time on an idle cluster; times submit -> mpirun running and
//                   submit -> every rank (kiln-train process) running, seen in /proc; prints
//                   p50/p99 of each, then cancels the job.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/socket.h"

using namespace kiln;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Where and as whom the load generator connects (from a kiln credentials file).
Credentials g_credentials;

// A DEALER connected over CURVE, as the CLI connects.
bool ConnectClient(transport::Socket& socket, const std::string& endpoint) {
  auto own = transport::NewCurveKeyPair();
  return own.ok() && socket.MakeCurveClient(g_credentials.server_key, *own).ok() &&
         socket.Connect(endpoint).ok();
}

template <typename M>
transport::Frames Request(const M& message, const std::string& id) {
  protocol::Envelope e = protocol::MakeEnvelope(message, id);
  e.auth = g_credentials.token;
  return {protocol::EncodeEnvelope(e)};
}

struct Totals {
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> errors{0};
};

void Client(transport::Context& context, const std::string& endpoint, const std::string& mode,
            const json& spec, int64_t jobs, int window, int client, Totals* totals) {
  transport::Socket socket(context, transport::SocketKind::kDealer);
  if (!ConnectClient(socket, endpoint)) return;
  int64_t sent = 0, received = 0;
  auto send_one = [&] {
    const std::string id = "c" + std::to_string(client) + "-" + std::to_string(sent);
    Status s = mode == "submit"
                   ? socket.Send(Request(
                         protocol::SubmitRequest{"bench-" + std::to_string(::getpid()) + "-" + id,
                                                 spec, std::nullopt, std::nullopt, "", false},
                         id))
                   : socket.Send(Request(protocol::ShowRequest{1'000'000'000}, id));
    if (s.ok()) ++sent;
    return s.ok();
  };
  while (received < jobs) {
    while (sent < jobs && sent - received < window && send_one()) {
    }
    transport::Poller poller;
    poller.AddSocket(socket);
    (void)poller.Wait(1000);
    while (auto frames = socket.Receive()) {
      ++received;
      auto envelope = protocol::DecodeEnvelope((*frames)[0]);
      const bool ok = envelope.ok() && (mode == "submit" ? envelope->type == "submit_reply"
                                                         : envelope->type == "error");
      (ok ? totals->acked : totals->errors)++;
    }
  }
}

// Processes whose command line contains `needle` (and `also`, when given).
int CountProcesses(const std::string& needle, const std::string& also) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(needle) != std::string::npos && (also.empty() || cmd.find(also) != std::string::npos)) {
      ++count;
    }
  }
  ::closedir(proc);
  return count;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

json Call(transport::Socket& socket, const transport::Frames& request) {
  (void)socket.Send(request);
  transport::Poller poller;
  poller.AddSocket(socket);
  (void)poller.Wait(10000);
  auto frames = socket.Receive();
  if (!frames) return json();
  auto envelope = protocol::DecodeEnvelope((*frames)[0]);
  return envelope.ok() ? envelope->body : json();
}

int Latency(transport::Context& context, const std::string& endpoint, const json& spec,
            int samples, const std::string& work_dir) {
  transport::Socket socket(context, transport::SocketKind::kDealer);
  if (!ConnectClient(socket, endpoint)) return 1;
  const int ranks = spec["resources"]["ranks"].get<int>();
  std::vector<double> launched, all_ranks;
  for (int i = 0; i < samples; ++i) {
    const auto t0 = Clock::now();
    json reply = Call(socket, Request(protocol::SubmitRequest{
        "lat-" + std::to_string(::getpid()) + "-" + std::to_string(i), spec, std::nullopt,
        std::nullopt, "", false}, "s"));
    const int64_t id = reply.value("job_id", int64_t{0});
    if (id == 0) return 1;
    const std::string run = work_dir + "/jobs/" + std::to_string(id) + "/";
    double t_launch = -1, t_ranks = -1;
    while (Seconds(t0, Clock::now()) < 20) {
      if (t_launch < 0 && CountProcesses("mpirun", run) > 0) t_launch = Seconds(t0, Clock::now());
      if (CountProcesses("kiln-train", run) >= ranks) {
        t_ranks = Seconds(t0, Clock::now());
        if (t_launch < 0) t_launch = t_ranks;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    Call(socket, Request(protocol::CancelRequest{id}, "c"));
    if (t_ranks < 0) return 1;
    launched.push_back(t_launch * 1000);
    all_ranks.push_back(t_ranks * 1000);
    // Wait for the ranks to be gone so the next sample starts on an idle node.
    while (CountProcesses("kiln-train", run) > 0 || CountProcesses("mpirun", run) > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::cout << json{{"launched_p50_ms", Percentile(launched, 0.5)},
                    {"launched_p99_ms", Percentile(launched, 0.99)},
                    {"ranks_p50_ms", Percentile(all_ranks, 0.5)},
                    {"ranks_p99_ms", Percentile(all_ranks, 0.99)},
                    {"samples", samples}}
                   .dump()
            << std::endl;
  return 0;
}

int Burst(transport::Context& context, const std::string& endpoint, const json& spec,
          int64_t jobs, double seconds) {
  transport::Socket socket(context, transport::SocketKind::kDealer);
  if (!ConnectClient(socket, endpoint)) return 1;
  const auto t0 = Clock::now();
  int64_t sent = 0, acked = 0;
  while (acked < jobs && Seconds(t0, Clock::now()) < seconds) {
    while (sent < jobs && sent - acked < 256) {
      const std::string id = "burst-" + std::to_string(sent);
      if (!socket.Send(Request(protocol::SubmitRequest{id, spec, std::nullopt, std::nullopt, "",
                                                      true}, id)).ok()) {
        break;
      }
      ++sent;
    }
    transport::Poller poller;
    poller.AddSocket(socket);
    (void)poller.Wait(200);
    while (auto frames = socket.Receive()) {
      auto e = protocol::DecodeEnvelope((*frames)[0]);
      if (!e.ok() || e->type != "submit_reply") continue;
      ++acked;
      std::cout << e->id << " " << e->body.value("job_id", int64_t{0}) << " "
                << (e->body.value("duplicate", false) ? 1 : 0) << "\n" << std::flush;
    }
  }
  return acked == jobs ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln-bench-submit: load generator for kiln-scheduler"};
  std::string endpoint, mode = "submit", spec_path, work_dir;
  int clients = 8, window = 32, samples = 20;
  int64_t jobs = 20000;
  std::string credentials;
  app.add_option("--endpoint", endpoint)->required();
  app.add_option("--credentials", credentials, "kiln credentials file (server key and token)")
      ->required();
  double seconds = 60;
  app.add_option("--mode", mode)->check(CLI::IsMember({"submit", "noop", "latency", "burst"}));
  app.add_option("--seconds", seconds, "burst: give up after this long");
  app.add_option("--spec", spec_path)->required();
  app.add_option("--clients", clients);
  app.add_option("--window", window, "requests in flight per client");
  app.add_option("--jobs", jobs, "requests per client");
  app.add_option("--samples", samples);
  app.add_option("--work-dir", work_dir, "the worker's work dir (latency mode)");
  CLI11_PARSE(app, argc, argv);
  auto loaded = LoadCredentials(credentials);
  if (!loaded.ok()) {
    std::cerr << loaded.status().ToString() << "\n";
    return 2;
  }
  g_credentials = *loaded;
  auto text = ReadFile(spec_path);
  if (!text.ok()) {
    std::cerr << text.status().ToString() << "\n";
    return 2;
  }
  const json spec = json::parse(*text);
  transport::Context context;
  if (mode == "latency") return Latency(context, endpoint, spec, samples, work_dir);
  if (mode == "burst") return Burst(context, endpoint, spec, jobs, seconds);

  Totals totals;
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back(Client, std::ref(context), endpoint, mode, std::cref(spec), jobs, window,
                         c, &totals);
  }
  for (auto& t : threads) t.join();
  const double elapsed = Seconds(t0, Clock::now());
  std::cout << json{{"mode", mode},
                    {"acked", totals.acked.load()},
                    {"errors", totals.errors.load()},
                    {"seconds", elapsed},
                    {"per_second", totals.acked.load() / elapsed}}
                   .dump()
            << std::endl;
  return totals.errors.load() == 0 ? 0 : 1;
}
