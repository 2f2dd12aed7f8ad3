// kiln-predict: predictions from a checkpoint, one line per input row. `kiln predict` pulls the
// checkpoint and the job's spec and runs this; it can also be run by hand on a pulled checkpoint.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#ifdef KILN_PREDICT_HTTP
#include <httplib.h>

#include <chrono>
#include <thread>
#endif

#include "common/file_util.h"
#include "common/job_spec.h"
#include "worker/train/checkpoint.h"
#include "worker/train/predictor.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "kiln-predict: " << message << "\n";
  return 1;
}

#ifdef KILN_PREDICT_HTTP
// Asks a service's replicas (the Open Inference Protocol over HTTP) for the predictions of
// `rows`, a batch at a time, spreading the batches over the endpoints. A replica that does not
// answer, or answers 5xx, is skipped for the next: a replica that dies loses no request. A 4xx
// is the request's own fault and ends the run with the replica's message.
class ServiceClient {
 public:
  ServiceClient(std::vector<std::string> endpoints, std::string model, std::string token)
      : endpoints_(std::move(endpoints)), model_(std::move(model)), token_(std::move(token)) {
    for (const auto& e : endpoints_) {
      auto c = std::make_unique<httplib::Client>(e);
      c->set_connection_timeout(2, 0);
      c->set_read_timeout(30, 0);
      c->set_keep_alive(true);
      c->set_tcp_nodelay(true);
      clients_.push_back(std::move(c));
    }
  }

  // GET /v2/models/NAME from the first replica that answers.
  kiln::Result<nlohmann::json> Metadata() { return Call("GET", "/v2/models/" + model_, ""); }

  kiln::Result<std::vector<kiln::train::Prediction>> Predict(const torch::Tensor& rows) {
    std::vector<kiln::train::Prediction> out;
    constexpr int64_t kBatch = 256;
    const int64_t features = rows.size(1);
    torch::Tensor contiguous = rows.contiguous();
    const float* data = contiguous.data_ptr<float>();
    for (int64_t i = 0; i < rows.size(0); i += kBatch) {
      const int64_t n = std::min(kBatch, rows.size(0) - i);
      nlohmann::json body = {
          {"inputs",
           {{{"name", "input"},
             {"shape", {n, features}},
             {"datatype", "FP32"},
             {"data", std::vector<float>(data + i * features, data + (i + n) * features)}}}}};
      auto reply = Call("POST", "/v2/models/" + model_ + "/infer", body.dump());
      if (!reply.ok()) return reply.status();
      const nlohmann::json* labels = nullptr;
      const nlohmann::json* probabilities = nullptr;
      const nlohmann::json outputs = reply->value("outputs", nlohmann::json::array());
      for (const auto& o : outputs) {
        if (o.value("name", "") == "label") labels = &o["data"];
        if (o.value("name", "") == "probability") probabilities = &o["data"];
      }
      if (labels == nullptr || probabilities == nullptr ||
          labels->size() != static_cast<size_t>(n) ||
          probabilities->size() != static_cast<size_t>(n)) {
        return kiln::Status::Internal("a replica's reply lacks label or probability for " +
                                      std::to_string(n) + " rows");
      }
      for (int64_t r = 0; r < n; ++r) {
        const nlohmann::json& label = (*labels)[static_cast<size_t>(r)];
        const nlohmann::json& p = (*probabilities)[static_cast<size_t>(r)];
        if (!label.is_number_integer() || !p.is_number()) {
          return kiln::Status::Internal(
              "row " + std::to_string(i + r) +
              ": the replica answered no number (a NaN: the "
              "row's values are far outside what the model was trained on)");
        }
        out.push_back({label.get<int64_t>(), p.get<double>()});
      }
    }
    return out;
  }

  int64_t retries() const { return retries_; }

 private:
  kiln::Result<nlohmann::json> Call(const std::string& method, const std::string& path,
                                    const std::string& body) {
    std::string last_error = "no endpoint";
    const size_t tries = endpoints_.size() * 3;
    for (size_t t = 0; t < tries; ++t) {
      const size_t i = next_++ % endpoints_.size();
      if (t > 0 && t % endpoints_.size() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
      auto res = method == "GET"
                     ? clients_[i]->Get(path.c_str(), headers)
                     : clients_[i]->Post(path.c_str(), headers, body, "application/json");
      if (!res) {
        last_error = endpoints_[i] + ": " + httplib::to_string(res.error());
        ++retries_;
        continue;
      }
      nlohmann::json reply = nlohmann::json::parse(res->body, nullptr, false);
      if (res->status >= 500) {
        last_error = endpoints_[i] + ": HTTP " + std::to_string(res->status);
        ++retries_;
        continue;
      }
      if (res->status != 200 || reply.is_discarded()) {
        const std::string message = !reply.is_discarded() && reply.contains("error")
                                        ? reply["error"].dump()
                                        : "HTTP " + std::to_string(res->status);
        return kiln::Status::InvalidArgument(endpoints_[i] + " refused the request: " + message);
      }
      return reply;
    }
    return kiln::Status::Unavailable("no replica answered (" + last_error + ")");
  }

  std::vector<std::string> endpoints_;
  std::string model_, token_;
  std::vector<std::unique_ptr<httplib::Client>> clients_;
  size_t next_ = 0;
  int64_t retries_ = 0;
};
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln-predict: predict with a kiln checkpoint"};
  std::string spec_path, checkpoint, input, labels_path, output, service, service_endpoints;
  bool json = false;
  int threads = 1;
  app.add_option("--spec", spec_path, "the job's spec (JSON)")->required();
  app.add_option("--checkpoint", checkpoint, "checkpoint file (kiln ckpt pull)");
#ifdef KILN_PREDICT_HTTP
  app.add_option("--service", service,
                 "ask this service's replicas instead of a checkpoint (kiln predict --service)");
  app.add_option("--service-endpoints", service_endpoints,
                 "the replicas, comma-separated URLs; the token is $KILN_SERVICE_TOKEN");
#endif
  app.add_option("--input", input, "CSV rows of features, or IDX images (.gz or not)")->required();
  app.add_option("--labels", labels_path, "true labels (IDX, or one per line): report accuracy");
  app.add_option("--output", output, "write predictions here instead of stdout");
  app.add_flag("--json", json, "one JSON object per prediction");
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(std::max(1, threads));
  if (checkpoint.empty() == service.empty()) {
    return Fail("give --checkpoint FILE, or --service NAME with --service-endpoints");
  }

  auto text = kiln::ReadFile(spec_path);
  if (!text.ok()) return Fail(text.status().message());
  kiln::SpecParseResult parsed = kiln::ParseJobSpecText(*text);
  if (!parsed.ok()) return Fail("spec: " + parsed.errors[0].ToString());
  try {
    kiln::JobSpec spec = parsed.spec;
    std::vector<kiln::train::Prediction> predictions;
    nlohmann::json checkpoint_input = nlohmann::json::object();
    std::optional<kiln::train::PredictionInput> rows;
#ifdef KILN_PREDICT_HTTP
    if (!service.empty()) {
      std::vector<std::string> endpoints;
      for (size_t from = 0; from <= service_endpoints.size();) {
        const size_t comma = std::min(service_endpoints.find(',', from), service_endpoints.size());
        if (comma > from) endpoints.push_back(service_endpoints.substr(from, comma - from));
        from = comma + 1;
      }
      if (endpoints.empty()) return Fail("--service-endpoints: give at least one URL");
      const char* token = std::getenv("KILN_SERVICE_TOKEN");
      ServiceClient client(endpoints, service, token != nullptr ? token : "");
      auto metadata = client.Metadata();
      if (!metadata.ok()) return Fail(metadata.status().message());
      // The model's input as its checkpoint records it (CSV columns by name), and its width.
      const nlohmann::json parameters = metadata->value("parameters", nlohmann::json::object());
      if (parameters.is_object() && parameters.contains("input") &&
          parameters["input"].is_object()) {
        checkpoint_input = parameters["input"];
      }
      if (spec.data.features == 0) spec.data.features = checkpoint_input.value("features", 0);
      if (spec.data.features <= 0) {
        return Fail("the service's model does not say how many inputs it takes");
      }
      // The replica scales standardized features itself: send them as they are in the file.
      kiln::JobSpec raw = spec;
      raw.data.standardize = false;
      auto read = kiln::train::ReadPredictionInput(
          input, raw, kiln::train::TrainedColumns(raw, checkpoint_input));
      if (!read.ok()) return Fail(read.status().message());
      rows = std::move(read).value();
      auto answered = client.Predict(rows->rows);
      if (!answered.ok()) return Fail(answered.status().message());
      predictions = std::move(answered).value();
      if (client.retries() > 0) {
        std::cerr << "kiln-predict: " << client.retries()
                  << " request(s) went to another replica after one failed\n";
      }
    }
#endif
    if (service.empty()) {
      auto state = kiln::train::ReadCheckpointState(checkpoint);
      if (!state.ok()) return Fail(state.status().message());
      checkpoint_input = state->input;
      if (spec.data.features == 0) {  // csv without data.features: the checkpoint knows
        spec.data.features = state->input.value("features", 0);
        if (spec.data.features <= 0) {
          return Fail(
              "the spec has no data.features and the checkpoint does not record how "
              "many inputs the model takes: add data.features to the spec given with "
              "--spec");
        }
      }
      auto read = kiln::train::ReadPredictionInput(
          input, spec, kiln::train::TrainedColumns(spec, checkpoint_input));
      if (!read.ok()) return Fail(read.status().message());
      rows = std::move(read).value();
      auto predictor = kiln::train::Predictor::Load(spec, checkpoint);
      if (!predictor.ok()) return Fail(predictor.status().message());
      predictions = predictor->Predict(rows->rows);
    }
    const kiln::train::PredictionColumns trained =
        kiln::train::TrainedColumns(spec, checkpoint_input);

    std::ofstream file;
    if (!output.empty()) {
      file.open(output);
      if (!file) return Fail("cannot write " + output);
    }
    std::ostream& out = output.empty() ? std::cout : file;
    if (!json) out << "row,label,probability\n";
    char line[128];
    for (size_t i = 0; i < predictions.size(); ++i) {
      const auto& p = predictions[i];
      if (json) {
        std::snprintf(line, sizeof line, "{\"row\":%zu,\"label\":%lld,\"probability\":%.6f}\n", i,
                      static_cast<long long>(p.label), p.probability);
      } else {
        std::snprintf(line, sizeof line, "%zu,%lld,%.6f\n", i, static_cast<long long>(p.label),
                      p.probability);
      }
      out << line;
    }
    out.flush();
    std::cerr << "predicted " << predictions.size() << " rows";
    if (!labels_path.empty() || (rows->labels.defined() && !spec.IsRegression())) {
      // --labels wins; else the input's own label column.
      auto labels = labels_path.empty() ? kiln::Result<torch::Tensor>(rows->labels)
                                        : kiln::train::ReadLabels(labels_path);
      if (!labels.ok()) return Fail(labels.status().message());
      const std::string labels_from =
          labels_path.empty() ? input + " column \"" + trained.label_column + "\"" : labels_path;
      if (labels->size(0) != static_cast<int64_t>(predictions.size())) {
        return Fail(labels_from + ": " + std::to_string(labels->size(0)) + " labels for " +
                    std::to_string(predictions.size()) + " rows");
      }
      auto l = labels->accessor<int64_t, 1>();
      int64_t correct = 0;
      for (size_t i = 0; i < predictions.size(); ++i) {
        correct += predictions[i].label == l[static_cast<int64_t>(i)] ? 1 : 0;
      }
      std::snprintf(line, sizeof line, "; accuracy %.4f (%lld of %zu)",
                    static_cast<double>(correct) / static_cast<double>(predictions.size()),
                    static_cast<long long>(correct), predictions.size());
      std::cerr << line << " against " << labels_from;
    }
    std::cerr << "\n";
  } catch (const c10::Error& e) {
    return Fail(std::string("LibTorch: ") + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    return Fail(std::string("a replica's answer is not what the protocol says: ") + e.what());
  }
  return 0;
}
