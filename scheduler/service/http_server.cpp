#include "scheduler/service/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <variant>

#include "common/daemon/metrics_http.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "scheduler/cli/scheduler_client.h"
#include "scheduler/service/api_routes.h"
#include "scheduler/service/dashboard_assets.h"

namespace kiln::service {

using nlohmann::json;

namespace {

constexpr size_t kMaxIdleClients = 32;

void Answer(httplib::Response& res, const ApiResponse& answer) {
  res.status = answer.status;
  // Log lines may hold bytes that are not UTF-8: they are replaced, never a reason to fail.
  res.set_content(answer.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

std::string BearerToken(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  if (header.size() < 7) return "";
  std::string scheme = header.substr(0, 7);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
  if (scheme != "bearer ") return "";
  std::string token = header.substr(7);
  token.erase(0, token.find_first_not_of(' '));
  return token;
}

}  // namespace

// A forwarding client taken from the pool for one request (or one download), given back after.
class HttpServer::ClientLease {
 public:
  explicit ClientLease(HttpServer* server) : server_(server), client_(server->AcquireClient()) {}
  ~ClientLease() { server_->ReleaseClient(std::move(client_)); }
  cli::SchedulerClient& operator*() { return *client_; }
  cli::SchedulerClient* operator->() { return client_.get(); }

 private:
  HttpServer* server_;
  std::unique_ptr<cli::SchedulerClient> client_;
};

HttpServer::HttpServer() = default;

HttpServer::~HttpServer() {
  http_.reset();  // serving stops (threads joined) before the clients they use go
}

std::unique_ptr<cli::SchedulerClient> HttpServer::AcquireClient() {
  {
    std::lock_guard<std::mutex> lock(clients_mu_);
    if (!idle_clients_.empty()) {
      auto client = std::move(idle_clients_.back());
      idle_clients_.pop_back();
      return client;
    }
  }
  cli::ClientSettings settings;
  settings.address = api_.endpoint;
  settings.server_key = api_.server_public_key;
  settings.timeout_ms = api_.timeout_ms;
  return std::make_unique<cli::SchedulerClient>(settings, &context_);
}

void HttpServer::ReleaseClient(std::unique_ptr<cli::SchedulerClient> client) {
  std::lock_guard<std::mutex> lock(clients_mu_);
  if (idle_clients_.size() < kMaxIdleClients) idle_clients_.push_back(std::move(client));
}

void HttpServer::AddDashboardRoutes() {
  // Debian's Chart.js, read once; without it the pages work and show no charts.
  auto chart = ReadFile(kChartJsPath);
  if (chart.ok()) {
    chart_js_ = std::move(*chart);
  } else {
    spdlog::warn("dashboard: no {} (install libjs-chart.js): the job pages will have no charts",
                 kChartJsPath);
  }
  auto serve = [this](const httplib::Request& req, httplib::Response& res) {
    // No framing by other sites (the pages have buttons that cancel jobs), scripts only from
    // here, and no token or URL leaking through a referrer.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
                   "base-uri 'none'; form-action 'self'");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-cache");
    if (req.path == "/chart.js") {
      if (chart_js_.empty()) {
        res.status = 404;
        res.set_content("// Chart.js is not installed on the scheduler host (libjs-chart.js)\n",
                        "text/javascript");
        return;
      }
      res.set_content(chart_js_, "text/javascript; charset=utf-8");
      return;
    }
    const DashboardAsset* asset = FindDashboardAsset(req.path);
    if (asset == nullptr) {
      res.status = 404;
      res.set_content("not found\n", "text/plain");
      return;
    }
    res.set_content(asset->body, asset->content_type);
  };
  for (const char* path : {"/", "/index.html", "/app.js", "/style.css", "/chart.js"}) {
    http_->server().Get(path, serve);
  }
}

void HttpServer::AddApiRoutes() {
  httplib::Server& server = http_->server();
  server.Get(std::string(kApiPrefix) + "/openapi.json",
             [](const httplib::Request&, httplib::Response& res) {
               Answer(res, {200, OpenApiDocument()});
             });
  auto handle = [this](const httplib::Request& req, httplib::Response& res) {
    ApiRequest request;
    request.method = req.method;
    request.path = req.path.substr(std::string(kApiPrefix).size());
    for (const auto& [k, v] : req.params) request.query.emplace(k, v);
    request.body = req.body;
    request.token = BearerToken(req);
    request.fresh_request_id = NewRequestId();
    auto translated = TranslateApiRequest(request);
    if (auto* answer = std::get_if<ApiResponse>(&translated)) return Answer(res, *answer);
    const ApiCall& call = std::get<ApiCall>(translated);
    auto lease = std::make_shared<ClientLease>(this);
    auto reply = (*lease)->Exchange(call.request);
    if (!reply.ok()) {
      // No answer at all: the scheduler is busy or restarting; the client may retry.
      return Answer(res, ApiError(Status::Unavailable(reply.status().message())));
    }
    if (!call.download || reply->type != protocol::CheckpointData::kType) {
      return Answer(res, TranslateApiReply(call, *reply));
    }
    auto head = protocol::DecodeBody<protocol::CheckpointData>(*reply);
    if (!head.ok()) return Answer(res, ApiError(Status::Internal(head.status().message())));
    const protocol::CheckpointData first = *head;
    std::string first_bytes = (*lease)->last_binary();
    res.set_header("X-Checkpoint-Sha256", first.sha256);
    res.set_header("X-Checkpoint-Step", std::to_string(first.step));
    res.set_header("Content-Disposition", "attachment; filename=\"job-" +
                                              std::to_string(first.job_id) + "-step-" +
                                              std::to_string(first.step) + ".pt\"");
    const std::string token = call.request.auth;
    // The rest is read in chunks as the HTTP client takes them: memory stays one chunk, and the
    // step is fixed to the one the first read found (a newer "latest" cannot slip in). This runs
    // after the handler returned, outside cpp-httplib's exception handling: nothing may escape.
    res.set_content_provider(
        static_cast<size_t>(first.bytes), "application/octet-stream",
        [lease, first, first_bytes, token](size_t offset, size_t length,
                                           httplib::DataSink& sink) -> bool {
          try {
            if (offset < first_bytes.size()) {
              const size_t n = std::min(length, first_bytes.size() - offset);
              return sink.write(first_bytes.data() + offset, n);
            }
            protocol::CheckpointRead read{first.job_id, first.step, static_cast<int64_t>(offset),
                                          static_cast<int64_t>(std::min<size_t>(length, 8 << 20))};
            protocol::Envelope request = protocol::MakeEnvelope(read);
            request.auth = token;
            // A scheduler with many replies waiting answers "try again": wait a little, a few
            // times, rather than cut the download short.
            for (int tries = 0; tries < 10; ++tries) {
              request.id.clear();
              auto chunk = (*lease)->Exchange(request);
              if (chunk.ok() && chunk->type == protocol::ErrorReply::kType &&
                  chunk->body.value("code", "") == StatusCodeName(StatusCode::kUnavailable)) {
                std::this_thread::sleep_for(std::chrono::milliseconds(500));
                continue;
              }
              if (!chunk.ok() || chunk->type != protocol::CheckpointData::kType) {
                spdlog::warn("API download of job {} step {} stopped at byte {}: {}", first.job_id,
                             first.step, offset,
                             chunk.ok() ? chunk->body.dump() : chunk.status().message());
                return false;
              }
              auto head = protocol::DecodeBody<protocol::CheckpointData>(*chunk);
              // The same file all along: a checkpoint written again at this step ends the
              // download rather than mix two versions.
              if (!head.ok() || head->sha256 != first.sha256 ||
                  head->offset != static_cast<int64_t>(offset)) {
                spdlog::warn("API download of job {} step {}: the checkpoint changed at byte {}",
                             first.job_id, first.step, offset);
                return false;
              }
              const std::string& bytes = (*lease)->last_binary();
              if (bytes.empty()) return false;
              return sink.write(bytes.data(), std::min(bytes.size(), length));
            }
            return false;
          } catch (const std::exception& e) {
            spdlog::warn("API download of job {} step {} stopped: {}", first.job_id, first.step,
                         e.what());
            return false;
          }
        });
  };
  const std::string pattern = std::string(kApiPrefix) + "/.*";
  server.Get(pattern, handle);
  server.Post(pattern, handle);
  server.Delete(pattern, handle);
  server.Put(pattern, handle);
  server.Patch(pattern, handle);
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                      const ApiTarget& api, const HttpTls& tls) {
  std::unique_ptr<HttpServer> http(new HttpServer());
  http->api_ = api;
  std::unique_ptr<httplib::Server> server;
  if (!tls.certificate_file.empty()) {
    auto secure =
        std::make_unique<httplib::SSLServer>(tls.certificate_file.c_str(), tls.key_file.c_str());
    if (!secure->is_valid()) {
      return Status::InvalidArgument("--http-cert/--http-key: cannot use " + tls.certificate_file +
                                     " with " + tls.key_file +
                                     " (not PEM, unreadable, or the key is not the "
                                     "certificate's)");
    }
    server = std::move(secure);
  }
  auto created =
      MetricsHttpServer::Create("--http", listen, std::move(server), !tls.certificate_file.empty());
  if (!created.ok()) return created.status();
  http->http_ = std::move(created).value();
  httplib::Server& s = http->http_->server();
  // Each connection holds a thread while it is read: more threads than the dashboard and scripts
  // need, so that a few slow clients do not starve the rest (docs/security.md has the limit).
  s.new_task_queue = [] { return new httplib::ThreadPool(32); };
  s.set_payload_max_length(kMaxApiBodyBytes);
  if (!api.endpoint.empty()) {
    http->AddApiRoutes();
    http->AddDashboardRoutes();
  }
  // Errors cpp-httplib answers itself (413 for a body over the limit, 400 for a malformed
  // request, 404 off the API) get a JSON body like the API's own.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                              httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message =
        res.status == 413
            ? "the request body is over " + std::to_string(kMaxApiBodyBytes) + " bytes; send less"
        : res.status == 404
            ? "nothing at " + req.path
            : "the request could not be read (HTTP " + std::to_string(res.status) + ")";
    ApiResponse answer = ApiError(Status::InvalidArgument(message));
    answer.status = res.status;
    Answer(res, answer);
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
        spdlog::error("HTTP {} {}: an unexpected exception; answered 500", req.method, req.path);
        Answer(res, ApiError(Status::Internal("the request could not be handled")));
      });
  KILN_RETURN_IF_ERROR(http->http_->Listen());
  return http;
}

const std::string& HttpServer::url() const { return http_->url(); }

void HttpServer::PublishMetrics(std::string text) { http_->Publish(std::move(text)); }

}  // namespace kiln::service
