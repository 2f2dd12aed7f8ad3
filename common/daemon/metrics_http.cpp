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

MetricsHttpServer::~MetricsHttpServer() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(
    const std::string& flag, const std::string& listen, std::unique_ptr<httplib::Server> server,
    bool tls) {
  auto parsed = ParseHostPort(flag, listen);
  if (!parsed.ok()) return parsed.status();
  std::unique_ptr<MetricsHttpServer> http(new MetricsHttpServer());
  http->flag_ = flag;
  http->listen_ = listen;
  http->host_ = parsed->first;
  http->port_ = parsed->second;
  http->tls_ = tls;
  http->server_ = server ? std::move(server) : std::make_unique<httplib::Server>();
  MetricsHttpServer* self = http.get();
  httplib::Server& s = *http->server_;
  s.set_tcp_nodelay(true);  // replies go out whole at once, not after a delayed ACK
  s.set_read_timeout(5, 0);
  s.set_write_timeout(30, 0);
  s.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
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
  return http;
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& flag,
                                                                    const std::string& listen) {
  auto http = Create(flag, listen);
  if (!http.ok()) return http.status();
  (*http)->server().new_task_queue = [] { return new httplib::ThreadPool(4); };
  (*http)->server().set_payload_max_length(4096);
  KILN_RETURN_IF_ERROR((*http)->Listen());
  return http;
}

Status MetricsHttpServer::Listen() {
  httplib::Server& s = *server_;
  const int bound =
      port_ == 0 ? s.bind_to_any_port(host_) : (s.bind_to_port(host_, port_) ? port_ : -1);
  if (bound <= 0) {
    return Status::Unavailable(flag_ + ": cannot listen on " + listen_ +
                               " (is the port in use, or the address not this machine's?)");
  }
  bound_port_ = bound;
  url_ = std::string(tls_ ? "https://" : "http://") +
         (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" +
         std::to_string(bound);
  thread_ = std::thread([this] {
    if (!server_->listen_after_bind()) spdlog::error("the HTTP server stopped");
  });
  return Status::Ok();
}

void MetricsHttpServer::Publish(std::string text) {
  std::lock_guard<std::mutex> lock(mu_);
  text_ = std::move(text);
}

}  // namespace kiln
