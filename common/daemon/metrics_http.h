// A daemon's HTTP listener for Prometheus (cpp-httplib on a thread of its own): GET /metrics
// answers the text the daemon's loop last published. The agent's (kiln-worker --http); the
// scheduler's richer server (scheduler/service/http_server.h) shares ParseHostPort.
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
  static Result<std::unique_ptr<MetricsHttpServer>> Start(const std::string& flag,
                                                          const std::string& listen);
  ~MetricsHttpServer();
  const std::string& url() const { return url_; }
  void Publish(std::string text);

 private:
  MetricsHttpServer();
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string url_;
  std::mutex mu_;
  std::string text_;
};

}  // namespace kiln
