#include "common/daemon/metrics_http.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

namespace kiln {

Result<std::pair<std::string, int>> ParseHostPort(const std::string& flag,
                                                  const std::string& listen) {
  const auto colon = listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos && colon > 0) {
    try {
      size_t used = 0;
      port = std::stoi(listen.substr(colon + 1), &used);
      if (used != listen.size() - colon - 1) port = -1;
    } catch (const std::exception&) {
      port = -1;
    }
  }
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument(flag + ": expected HOST:PORT such as 127.0.0.1:9470, got \"" +
                                   listen + "\"");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

MetricsHttpServer::MetricsHttpServer() : server_(std::make_unique<httplib::Server>()) {}

MetricsHttpServer::~MetricsHttpServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& flag,
                                                                    const std::string& listen) {
  auto parsed = ParseHostPort(flag, listen);
  if (!parsed.ok()) return parsed.status();
  const auto [host, port] = *parsed;
  std::unique_ptr<MetricsHttpServer> http(new MetricsHttpServer());
  MetricsHttpServer* self = http.get();
  httplib::Server& server = *http->server_;
  server.new_task_queue = [] { return new httplib::ThreadPool(4); };
  server.set_tcp_nodelay(true);
  server.set_payload_max_length(4096);
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    std::string text;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      text = self->text_;
    }
    if (text.empty()) {
      res.status = 503;
      res.set_content("metrics are not published yet; try again in a few seconds\n", "text/plain");
      return;
    }
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  const int bound =
      port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return Status::Unavailable(flag + ": cannot listen on " + listen +
                               " (is the port in use, or the address not this machine's?)");
  }
  http->url_ = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
               std::to_string(bound);
  http->thread_ = std::thread([self] {
    if (!self->server_->listen_after_bind()) spdlog::error("the HTTP server stopped");
  });
  return http;
}

void MetricsHttpServer::Publish(std::string text) {
  std::lock_guard<std::mutex> lock(mu_);
  text_ = std::move(text);
}

}  // namespace kiln
