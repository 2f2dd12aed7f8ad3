// The scheduler's HTTP server, on threads of its own (cpp-httplib): GET /metrics answers the
// Prometheus text the scheduler's loop last published (SchedulerService::SetMetricsSink). The
// loop owns all state; these threads only read the published text, under a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace kiln::service {

class HttpServer {
 public:
  // `listen`: "HOST:PORT" (PORT 0: a free port, see url()). Keep HOST on loopback unless the
  // network in front of it is trusted: the metrics name users and nodes.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& listen);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& url() const { return url_; }  // http://HOST:PORT
  void PublishMetrics(std::string text);

 private:
  HttpServer();
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string url_;
  std::mutex mu_;
  std::string metrics_;  // empty until the first publish
};

}  // namespace kiln::service
