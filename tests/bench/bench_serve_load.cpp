// Load for scripts/bench-serve.sh: N keep-alive HTTP clients, each posting the same body in a
// loop for a while, one request in flight each. Prints one JSON object: requests, errors,
// requests/s and latency quantiles over the measured window (after a warm-up).
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  CLI::App app{"kiln-bench-serve-load: HTTP load with a latency histogram"};
  std::string url, path, token, body_file;
  int concurrency = 1;
  double seconds = 5, warmup_s = 1;
  app.add_option("--url", url, "http://HOST:PORT")->required();
  app.add_option("--path", path, "request path")->required();
  app.add_option("--token", token, "bearer token");
  app.add_option("--body-file", body_file, "JSON body to POST")->required();
  app.add_option("--concurrency", concurrency)->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  app.add_option("--warmup-s", warmup_s)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::ifstream in(body_file);
  std::stringstream text;
  text << in.rdbuf();
  const std::string body = text.str();

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto measure_from = start + std::chrono::duration<double>(warmup_s);
  const auto end = measure_from + std::chrono::duration<double>(seconds);
  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      httplib::Client client(url);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);  // else each body waits for the delayed ACK of its headers
      client.set_read_timeout(30, 0);
      httplib::Headers headers;
      if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
      std::vector<double> mine;
      int64_t my_errors = 0;
      while (true) {
        const auto sent = Clock::now();
        if (sent >= end) break;
        auto r = client.Post(path.c_str(), headers, body, "application/json");
        const auto got = Clock::now();
        if (sent < measure_from) continue;
        if (!r || r->status != 200) {
          ++my_errors;
          continue;
        }
        mine.push_back(std::chrono::duration<double, std::milli>(got - sent).count());
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      errors += my_errors;
    });
  }
  for (auto& t : threads) t.join();
  std::sort(latencies.begin(), latencies.end());
  auto quantile = [&](double q) {
    if (latencies.empty()) return 0.0;
    const size_t k =
        std::min(latencies.size() - 1, static_cast<size_t>(std::ceil(q * latencies.size())) - 1);
    return latencies[k];
  };
  std::printf(
      "{\"requests\": %zu, \"errors\": %lld, \"requests_per_s\": %.1f, \"p50_ms\": %.3f, "
      "\"p99_ms\": %.3f}\n",
      latencies.size(), static_cast<long long>(errors.load()),
      static_cast<double>(latencies.size()) / seconds, quantile(0.5), quantile(0.99));
  return latencies.empty() ? 1 : 0;
}
