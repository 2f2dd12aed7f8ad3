// kiln-serve: one replica of a deployed model. Loads a checkpoint with the job spec that trained
// it, runs a warm-up batch, then answers the Open Inference Protocol over HTTP (cpp-httplib),
// batching concurrent requests (worker/serve/batcher.h). Started by the worker agent for a
// service's replica (docs/serving.md); it reports its endpoint, readiness and request figures to
// the agent on the run dir's report socket, as rank 0 of kiln-train reports progress.
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/daemon/metrics_http.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "worker/serve/access_tokens.h"
#include "worker/serve/batcher.h"
#include "worker/serve/inference_codec.h"
#include "worker/serve/serve_stats.h"
#include "worker/train/checkpoint.h"
#include "worker/train/datasets.h"
#include "worker/train/predictor.h"
#include "worker/train/progress_reporter.h"

namespace {

using kiln::serve::ModelSignature;
using nlohmann::json;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

int Fail(const std::string& message) {
  std::cerr << "kiln-serve: " << message << "\n";
  return 1;
}

void Reply(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void ReplyError(httplib::Response& res, const kiln::Status& s) {
  const int status = kiln::HttpStatusOf(s.code());
  if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
  Reply(res, status, kiln::serve::ErrorBody(s.message()));
}

struct Options {
  std::string spec_path, checkpoint, name, version, listen = "127.0.0.1:0", advertise, tokens_path,
                                                    report, cert, key;
  bool no_auth = false;
  int64_t max_batch = 32;
  double max_delay_ms = 2;
  int64_t max_body_bytes = 16 << 20;
  int threads = 1;
  int http_threads = 64;
  double report_every_s = 1;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln-serve: serve a kiln checkpoint over the Open Inference Protocol (HTTP)"};
  Options o;
  app.add_option("--spec", o.spec_path, "the spec of the job that trained the model")->required();
  app.add_option("--checkpoint", o.checkpoint, "the checkpoint file")->required();
  app.add_option("--name", o.name, "the model's name in URLs (/v2/models/NAME)")->required();
  app.add_option("--version", o.version, "the model's version (kiln: JOB:STEP)");
  app.add_option("--listen", o.listen, "HOST:PORT to serve on (PORT 0: any free one)")
      ->capture_default_str();
  app.add_option("--advertise", o.advertise,
                 "the host clients reach this replica at (default: the --listen host)");
  app.add_option("--tokens", o.tokens_path,
                 "file of the SHA-256 of each token allowed ({\"tokens_sha256\": [...]})");
  app.add_flag("--no-auth", o.no_auth, "answer every request without a token (trusted networks)");
  app.add_option("--max-batch", o.max_batch, "rows per forward pass at most")
      ->capture_default_str();
  app.add_option("--max-delay-ms", o.max_delay_ms,
                 "longest a request waits for others to batch with")
      ->capture_default_str();
  app.add_option("--max-body-bytes", o.max_body_bytes, "largest request body")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads of the model")->capture_default_str();
  app.add_option("--http-threads", o.http_threads, "connections served at once")
      ->capture_default_str();
  app.add_option("--report", o.report, "the worker agent's report socket (ipc://...)");
  app.add_option("--report-every-s", o.report_every_s, "seconds between reports")
      ->capture_default_str();
  app.add_option("--http-cert", o.cert, "TLS certificate (PEM): serve HTTPS");
  app.add_option("--http-key", o.key, "TLS private key (PEM)");
  CLI11_PARSE(app, argc, argv);
  const bool name_ok = !o.name.empty() && o.name.size() <= 63 &&
                       o.name.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyz"
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == std::string::npos;
  if (!name_ok) return Fail("--name: 1 to 63 letters, digits, '-' or '_'");
  if (o.version.find_first_not_of("0123456789:") != std::string::npos) {
    return Fail("--version: digits and ':' (JOB:STEP)");
  }
  if (o.tokens_path.empty() && !o.no_auth) {
    return Fail("give --tokens FILE (who may call), or --no-auth to allow everyone");
  }
  if (o.cert.empty() != o.key.empty()) return Fail("--http-cert and --http-key go together");
  if (o.max_batch < 1 || o.max_batch > 4096) return Fail("--max-batch: must be 1..4096");
  if (o.max_delay_ms < 0 || o.max_delay_ms > 10000) return Fail("--max-delay-ms: must be 0..10000");
  at::set_num_threads(std::max(1, o.threads));
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);

  auto text = kiln::ReadFile(o.spec_path);
  if (!text.ok()) return Fail(text.status().message());
  kiln::SpecParseResult parsed = kiln::ParseJobSpecText(*text);
  if (!parsed.ok()) return Fail("spec: " + parsed.errors[0].ToString());
  kiln::JobSpec spec = parsed.spec;
  if (spec.IsRegression()) return Fail("regression models (loss mse) are not served yet");

  std::unique_ptr<kiln::train::Predictor> predictor;
  torch::Tensor mean, deviation;
  ModelSignature model;
  try {
    auto state = kiln::train::ReadCheckpointState(o.checkpoint);
    if (!state.ok()) return Fail(state.status().message());
    if (spec.data.features == 0) spec.data.features = state->input.value("features", 0);
    if (state->input.is_object()) model.input = state->input;
    if (spec.InputFeatures() <= 0)
      return Fail(
          "the checkpoint does not say how many inputs the "
          "model takes, and the spec has no data.features");
    auto loaded = kiln::train::Predictor::Load(spec, o.checkpoint);
    if (!loaded.ok()) return Fail(loaded.status().message());
    predictor = std::make_unique<kiln::train::Predictor>(std::move(loaded).value());
    // A replica given GPUs (the agent narrowed CUDA_VISIBLE_DEVICES to them) runs on the first.
    const char* gpus = std::getenv("KILN_GPU_IDS");
    if (gpus != nullptr && *gpus != '\0') {
      if (torch::cuda::is_available()) {
        predictor->To(torch::Device(torch::kCUDA, 0));
        spdlog::info("kiln-serve: the model runs on CUDA device 0 (GPU {})", gpus);
      } else {
        spdlog::warn(
            "kiln-serve: GPUs {} were given, but this LibTorch has no CUDA or sees no "
            "device: the model runs on the CPU",
            gpus);
      }
    }
    if (spec.data.standardize) {
      // Clients send features as in their CSV files; the model saw them scaled by its training
      // split's statistics, which are recomputed from the same data, as kiln predict does.
      auto training = kiln::train::LoadDataset(spec);
      if (!training.ok()) {
        return Fail("the job standardized its features; its training data is needed: " +
                    training.status().message());
      }
      mean = training->feature_mean;
      deviation = training->feature_std;
    }
  } catch (const c10::Error& e) {
    return Fail(std::string("LibTorch: ") + e.what_without_backtrace());
  }
  model.name = o.name;
  model.version = o.version.empty() ? "1" : o.version;
  model.features = spec.InputFeatures();
  model.input_shape = {-1, model.features};
  model.classes = spec.NumClasses();

  kiln::train::Predictor& p = *predictor;
  auto run_model = [&](const std::vector<float>& values, int64_t rows) {
    torch::Tensor x = torch::from_blob(const_cast<float*>(values.data()), {rows, model.features},
                                       torch::kFloat32);
    if (mean.defined()) x = (x - mean) / deviation;
    std::vector<kiln::train::Prediction> out = p.Predict(x);
    std::vector<kiln::serve::RowPrediction> rows_out;
    rows_out.reserve(out.size());
    for (const auto& r : out) rows_out.push_back({r.label, r.probability});
    return rows_out;
  };
  // Warm-up: the first forward pass allocates and picks kernels; no client should pay for it.
  try {
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) {
      (void)run_model(std::vector<float>(static_cast<size_t>(o.max_batch * model.features)),
                      o.max_batch);
      (void)run_model(std::vector<float>(static_cast<size_t>(model.features)), 1);
    }
    spdlog::info("kiln-serve: model {} version {} loaded and warmed up in {} ms", model.name,
                 model.version,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count());
  } catch (const c10::Error& e) {
    return Fail(std::string("warm-up failed: LibTorch: ") + e.what_without_backtrace());
  }

  kiln::serve::BatchPolicy policy{o.max_batch, static_cast<int64_t>(o.max_delay_ms * 1000)};
  kiln::serve::DynamicBatcher batcher(policy, run_model);
  kiln::serve::AccessTokens tokens(o.no_auth ? "" : o.tokens_path);
  if (kiln::Status s = tokens.Load(); !s.ok()) return Fail("--tokens: " + s.message());
  kiln::serve::ServeStats stats;

  std::unique_ptr<httplib::Server> tls_server;
  if (!o.cert.empty()) {
    auto secure = std::make_unique<httplib::SSLServer>(o.cert.c_str(), o.key.c_str());
    if (!secure->is_valid()) {
      return Fail("--http-cert/--http-key: cannot use " + o.cert + " with " + o.key);
    }
    tls_server = std::move(secure);
  }
  auto http =
      kiln::MetricsHttpServer::Create("--listen", o.listen, std::move(tls_server), !o.cert.empty());
  if (!http.ok()) return Fail(http.status().message());
  httplib::Server& server = (*http)->server();
  const int http_threads = std::max(4, o.http_threads);
  server.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  server.set_payload_max_length(static_cast<size_t>(o.max_body_bytes));
  server.set_keep_alive_max_count(100000);
  server.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "no such route: see /v2/models/" + model.name;
    if (res.status == 413) {
      message = "the body is over this replica's limit of " + std::to_string(o.max_body_bytes) +
                " bytes: send fewer rows per request";
    } else if (res.status == 400) {
      message = "malformed HTTP request";
    } else if (res.status != 404) {
      message = "HTTP " + std::to_string(res.status);
    }
    res.set_content(kiln::serve::ErrorBody(message), "application/json");
  });

  const std::string model_path = "/v2/models/" + model.name;
  const std::string metadata_body = kiln::serve::ModelMetadata(model).dump() + "\n";
  auto authorized = [&](const httplib::Request& req, httplib::Response& res) {
    kiln::Status s = tokens.Check(req.get_header_value("Authorization"));
    if (s.ok()) return true;
    ReplyError(res, s);
    return false;
  };
  server.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, 200, "{\"live\":true}\n");
  });
  server.Get("/v2/health/ready", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, g_stop ? 503 : 200, g_stop ? "{\"ready\":false}\n" : "{\"ready\":true}\n");
  });
  server.Get("/v2", [&](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req, res)) Reply(res, 200, kiln::serve::ServerMetadata().dump() + "\n");
  });
  auto metadata = [&](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req, res)) Reply(res, 200, metadata_body);
  };
  auto ready = [&](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req, res)) Reply(res, g_stop ? 503 : 200, "{\"ready\":true}\n");
  };
  server.Get(model_path, metadata);
  server.Get(model_path + "/versions/" + model.version, metadata);
  server.Get(model_path + "/ready", ready);
  server.Get(model_path + "/versions/" + model.version + "/ready", ready);
  auto infer = [&](const httplib::Request& req, httplib::Response& res) {
    const auto started = std::chrono::steady_clock::now();
    kiln::serve::DynamicBatcher::Arrival arrival(batcher);
    bool error = true;
    if (authorized(req, res)) {
      auto request = kiln::serve::ParseInferRequest(req.body, model);
      if (!request.ok()) {
        ReplyError(res, request.status());
      } else {
        auto rows = batcher.Infer(std::move(request->values), request->rows, &arrival);
        if (!rows.ok()) {
          ReplyError(res, rows.status());
        } else {
          Reply(res, 200, kiln::serve::InferResponse(model, *request, *rows).dump() + "\n");
          error = false;
        }
      }
    }
    arrival.Done();
    stats.Record(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count(),
        error);
  };
  server.Post(model_path + "/infer", infer);
  server.Post(model_path + "/versions/" + model.version + "/infer", infer);
  server.Post(R"(/v2/models/([^/]+)/infer)", [&](const httplib::Request& req,
                                                 httplib::Response& res) {
    if (!authorized(req, res)) return;
    ReplyError(res, kiln::Status::NotFound("no model \"" + req.matches[1].str() +
                                           "\" here; this replica serves \"" + model.name + "\""));
  });
  if (kiln::Status s = (*http)->Listen(); !s.ok()) return Fail(s.message());

  std::string host = o.advertise;
  if (host.empty()) host = o.listen.substr(0, o.listen.rfind(':'));
  const std::string endpoint = std::string((*http)->tls() ? "https://" : "http://") + host + ":" +
                               std::to_string((*http)->port());
  spdlog::info("kiln-serve: serving {} at {}{} (max batch {}, max delay {} ms)", model.name,
               endpoint, model_path, o.max_batch, o.max_delay_ms);
  std::cout << "serving " << model.name << " at " << endpoint << model_path << std::endl;

  kiln::train::ProgressReporter reporter(o.report);
  auto last = std::chrono::steady_clock::now();
  auto report = [&](bool final) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::max(1e-3, std::chrono::duration<double>(now - last).count());
    last = now;
    const kiln::serve::WindowStats w = stats.Take();
    json serve = {{"endpoint", endpoint},
                  {"model", model.name},
                  {"version", model.version},
                  {"ready", !final},
                  {"requests", stats.total_requests()},
                  {"errors", stats.total_errors()},
                  {"requests_per_s", static_cast<double>(w.requests) / seconds},
                  {"p50_ms", w.p50_ms},
                  {"p99_ms", w.p99_ms},
                  {"batches", batcher.batches()},
                  {"batched_rows", batcher.batched_rows()}};
    reporter.Progress({{"serve", serve}});
    (*http)->Publish(
        "# TYPE kiln_serve_requests_total counter\nkiln_serve_requests_total " +
        std::to_string(stats.total_requests()) +
        "\n# TYPE kiln_serve_errors_total counter\nkiln_serve_errors_total " +
        std::to_string(stats.total_errors()) +
        "\n# TYPE kiln_serve_batches_total counter\nkiln_serve_batches_total " +
        std::to_string(batcher.batches()) +
        "\n# TYPE kiln_serve_batched_rows_total counter\nkiln_serve_batched_rows_total " +
        std::to_string(batcher.batched_rows()) + "\n");
  };
  report(false);
  auto next = std::chrono::steady_clock::now();
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (std::chrono::steady_clock::now() - next >=
        std::chrono::duration<double>(o.report_every_s)) {
      next = std::chrono::steady_clock::now();
      report(false);
    }
  }
  spdlog::info("kiln-serve: stopping");
  report(true);
  http->reset();  // stops taking requests, finishes those being answered
  return 0;
}
