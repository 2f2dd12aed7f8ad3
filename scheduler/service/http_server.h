// The scheduler's HTTP server, on threads of its own (cpp-httplib):
//   GET /metrics   the Prometheus text the scheduler's loop last published (SetMetricsSink);
//   /              the dashboard (scheduler/dashboard/, docs/operations.md), a page over the API;
//   /api/v1/...    the HTTP API (api_routes.h): each request is forwarded to the scheduler's own
//                  ZeroMQ endpoint as the CLI's request with the caller's bearer token, over
//                  CURVE like any client, so the loop stays the only owner of state and the
//                  access rules are the CLI's by construction.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/daemon/metrics_http.h"
#include "common/status.h"
#include "common/transport/socket.h"

namespace kiln::cli {
class SchedulerClient;
}

namespace kiln::service {

// Where the API forwards requests: the scheduler's bound endpoint and public key.
struct ApiTarget {
  std::string endpoint;
  std::string server_public_key;
  int timeout_ms = 10000;
};

// TLS for the HTTP server: a PEM certificate (chain) and its private key; both empty: plain HTTP.
// Both or neither (kiln-scheduler's flags are checked for that before it starts).
struct HttpTls {
  std::string certificate_file;
  std::string key_file;
};

class HttpServer {
 public:
  // `listen`: "HOST:PORT" (PORT 0: a free port, see url()). Keep HOST on loopback unless the
  // network in front of it is trusted: the metrics name users and nodes.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& listen, const ApiTarget& api,
                                                   const HttpTls& tls = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& url() const;  // http://HOST:PORT (https:// with TLS)
  void PublishMetrics(std::string text);

 private:
  class ClientLease;
  HttpServer();
  void AddApiRoutes();
  void AddDashboardRoutes();
  std::unique_ptr<cli::SchedulerClient> AcquireClient();
  void ReleaseClient(std::unique_ptr<cli::SchedulerClient> client);

  ApiTarget api_;
  transport::Context context_;  // the forwarding clients' sockets
  std::mutex clients_mu_;
  std::vector<std::unique_ptr<cli::SchedulerClient>> idle_clients_;
  std::string chart_js_;  // Debian's Chart.js, served at /chart.js
  std::unique_ptr<MetricsHttpServer> http_;  // /metrics, and the routes added above
};

}  // namespace kiln::service
