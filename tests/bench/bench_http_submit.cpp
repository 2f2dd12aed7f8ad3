// kiln-bench-http-submit: N clients (threads, one keep-alive HTTP connection each) submit jobs
// through the scheduler's HTTP API (POST /api/v1/jobs), one request at a time per client, until
// `jobs` per client are acknowledged; prints {"per_second", "acked", "errors", "seconds"}.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/credentials.h"
#include "common/file_util.h"

using nlohmann::json;

int main(int argc, char** argv) {
  CLI::App app{"kiln-bench-http-submit"};
  std::string url, credentials_path, spec_path;
  int clients = 8;
  int64_t jobs = 500;
  app.add_option("--url", url, "http://HOST:PORT of the scheduler's HTTP server")->required();
  app.add_option("--credentials", credentials_path, "kiln credentials file")->required();
  app.add_option("--spec", spec_path, "job spec to submit")->required();
  app.add_option("--clients", clients)->capture_default_str();
  app.add_option("--jobs", jobs, "jobs per client")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto credentials = kiln::LoadCredentials(credentials_path);
  auto spec_text = kiln::ReadFile(spec_path);
  if (!credentials.ok() || !spec_text.ok()) {
    std::cerr << "cannot read the credentials or the spec\n";
    return 2;
  }
  const std::string token = credentials->token;
  const json spec = json::parse(*spec_text);
  std::atomic<int64_t> acked{0}, errors{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client(url);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(30, 0);
      const httplib::Headers headers = {{"Authorization", "Bearer " + token}};
      for (int64_t i = 0; i < jobs; ++i) {
        json body = {{"spec", spec},
                     {"hold", true},
                     {"request_id", "http-" + std::to_string(c) + "-" + std::to_string(i) + "-" +
                                        std::to_string(start.time_since_epoch().count())}};
        auto r = client.Post("/api/v1/jobs", headers, body.dump(), "application/json");
        if (r && r->status == 201) {
          ++acked;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << json{{"per_second", acked / seconds},
                    {"acked", acked.load()},
                    {"errors", errors.load()},
                    {"seconds", seconds}}
                   .dump()
            << std::endl;
  return errors > 0 ? 1 : 0;
}
