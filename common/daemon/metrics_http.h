// A daemon's HTTP server (cpp-httplib on a thread of its own) with GET /metrics answering the
// Prometheus text the daemon's loop last published. The agent uses it as is (kiln-worker
// --http); the scheduler adds its API and dashboard routes before it listens
// (scheduler/service/http_server.h).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace kiln {

// "HOST:PORT" ([v6]:PORT too; PORT 0: any free one) for the flag named `flag`, or an error
// naming the flag and an example.
Result<std::pair<std::string, int>> ParseHostPort(const std::string& flag,
                                                  const std::string& listen);

class MetricsHttpServer {
 public:
  // A server for `listen` with /metrics routed, not listening yet: add routes on server(), then
  // Listen(). `server`: a plain or TLS httplib server to use (null: a plain one).
  static Result<std::unique_ptr<MetricsHttpServer>> Create(
      const std::string& flag, const std::string& listen,
      std::unique_ptr<httplib::Server> server = nullptr, bool tls = false);
  // Create, then Listen.
  static Result<std::unique_ptr<MetricsHttpServer>> Start(const std::string& flag,
                                                          const std::string& listen);
  ~MetricsHttpServer();  // stops serving and joins the thread
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  httplib::Server& server() { return *server_; }
  // Binds and serves on a thread of its own; sets url().
  Status Listen();
  const std::string& url() const { return url_; }  // http://HOST:PORT (https:// with TLS)
  int port() const { return bound_port_; }         // after Listen
  bool tls() const { return tls_; }
  void Publish(std::string text);

 private:
  MetricsHttpServer() = default;
  std::string flag_, listen_, host_;
  int port_ = 0;
  int bound_port_ = 0;
  bool tls_ = false;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string url_;
  std::mutex mu_;
  std::string text_;  // empty until the first publish
};

}  // namespace kiln
