#include "common/job_spec.h"

#include <algorithm>
#include <cctype>

#include "common/quantities.h"

namespace kiln {

using nlohmann::json;

namespace {

constexpr int kFashionMnistFeatures = 28 * 28;
constexpr int kFashionMnistClasses = 10;

void ReadResources(JsonFieldReader r, ResourceSpec* out) {
  if (!r.valid()) return;
  r.RejectUnknown({"ranks", "gpus_per_rank", "threads_per_rank", "cpus_per_rank",
                   "memory_per_rank", "ranks_per_node", "placement", "labels"});
  r.Int("ranks", &out->ranks, true, 1, 4096);
  r.Int("gpus_per_rank", &out->gpus_per_rank, false, 0, 16);
  r.Int("threads_per_rank", &out->threads_per_rank, false, 1, 256);
  r.Int("cpus_per_rank", &out->cpus_per_rank, false, 1, 1024);
  r.Int("ranks_per_node", &out->ranks_per_node, false, 1, 4096);
  if (out->ranks_per_node > 0 && out->ranks % out->ranks_per_node != 0) {
    r.AddError(r.PathOf("ranks_per_node"),
               "must divide ranks (" + std::to_string(out->ranks) + "), got " +
                   std::to_string(out->ranks_per_node));
  }
  r.Enum("placement", &out->placement, false, {"pack", "spread"});
  r.StringList("labels", &out->labels, false);
  for (size_t i = 0; i < out->labels.size(); ++i) {
    if (out->labels[i].find(':') != std::string::npos) {  // kiln's own (scheduler/core/accounts.h)
      r.AddError(
          r.PathOf("labels") + "[" + std::to_string(i) + "]",
          "must not contain ':' (kiln's account labels use it), got \"" + out->labels[i] + "\"");
    }
  }
  std::sort(out->labels.begin(), out->labels.end());
  if (r.Has("memory_per_rank")) {
    const json& v = r.Raw("memory_per_rank");
    std::optional<int64_t> bytes;
    if (v.is_number_integer() && v.get<int64_t>() >= 0) bytes = v.get<int64_t>();
    if (v.is_string()) bytes = ParseSize(v.get<std::string>());
    if (bytes) {
      out->memory_per_rank = *bytes;
    } else {
      r.AddError(r.PathOf("memory_per_rank"),
                 "must be bytes or a size like \"4GiB\" or \"512M\", got " + v.dump());
    }
  }
}

void ReadScheduling(JsonFieldReader& root, JobSpec* s) {
  root.Int("priority", &s->priority, false, -1000, 1000);
  if (root.Has("time_limit")) {
    const json& v = root.Raw("time_limit");
    std::optional<int64_t> seconds;
    if (v.is_number_integer() && v.get<int64_t>() > 0) seconds = v.get<int64_t>();
    if (v.is_string()) seconds = ParseDuration(v.get<std::string>());
    if (seconds && *seconds > 0 && *seconds <= 366ll * 86400) {
      s->time_limit_s = *seconds;
    } else {
      root.AddError("time_limit", "must be seconds (> 0) or a duration like \"90m\" or "
                                  "\"1h30m\" (at most 366d), got " + v.dump());
    }
  }
  if (root.Has("depends_on")) {
    const json& v = root.Raw("depends_on");
    if (!v.is_array() || v.size() > 64) {
      root.AddError("depends_on", "must be an array of at most 64 job ids, got " +
                                      JsonTypeName(v));
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number_integer() || v[i].get<int64_t>() < 1) {
        root.AddError("depends_on[" + std::to_string(i) + "]",
                      "must be a job id (an integer >= 1), got " + v[i].dump());
        continue;
      }
      s->depends_on.push_back(v[i].get<int64_t>());
    }
  }
}

void ReadConvBlocks(const json& model, const std::string& path, ModelSpec* out,
                    std::vector<SpecError>* errors) {
  auto it = model.find("conv");
  if (it == model.end()) {
    if (out->type == "cnn") errors->push_back({path + ".conv", "is required for \"cnn\""});
    return;
  }
  if (out->type != "cnn") {
    errors->push_back({path + ".conv", "applies only to \"cnn\"; remove it"});
    return;
  }
  if (!it->is_array() || it->empty()) {
    errors->push_back({path + ".conv", "must be a non-empty array of {channels, kernel, pool}"});
    return;
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string where = path + ".conv[" + std::to_string(i) + "]";
    if (!(*it)[i].is_object()) {
      errors->push_back({where, "must be an object {channels, kernel, pool}"});
      continue;
    }
    ConvBlockSpec block;
    JsonFieldReader b((*it)[i], where, errors);
    b.RejectUnknown({"channels", "kernel", "pool"});
    b.Int("channels", &block.channels, true, 1, 4096);
    b.Int("kernel", &block.kernel, false, 1, 15);
    if (block.kernel % 2 == 0) {
      errors->push_back({where + ".kernel", "must be odd (convolutions keep the image size), got " +
                                                std::to_string(block.kernel)});
    }
    b.Int("pool", &block.pool, false, 1, 8);
    out->conv.push_back(block);
  }
}

void ReadModel(JsonFieldReader r, const json& document, ModelSpec* out,
               std::vector<SpecError>* errors) {
  if (!r.valid()) return;
  r.Enum("type", &out->type, true, {"mlp", "cnn", "torchscript"});
  if (out->type == "torchscript") {
    // The module file defines the network; kiln trains its parameters.
    r.RejectUnknown({"type", "path"});
    r.String("path", &out->path, true);
    if (!out->path.empty() && out->path[0] != '/') {
      r.AddError(r.PathOf("path"), "must be an absolute path (every node reads it), got \"" +
                                       out->path + "\"");
    }
    return;
  }
  r.RejectUnknown({"type", "conv", "hidden", "activation", "output_units", "output_activation",
                   "dropout"});
  if (document.contains("model") && document["model"].is_object()) {
    ReadConvBlocks(document["model"], "model", out, errors);
  }
  r.IntList("hidden", &out->hidden, false, 1, 1 << 16);
  r.Enum("activation", &out->activation, false, {"relu", "tanh", "sigmoid", "gelu"});
  r.Int("output_units", &out->output_units, false, 1, 1 << 16);
  r.Enum("output_activation", &out->output_activation, false, {"none", "sigmoid"});
  r.Double("dropout", &out->dropout, false, -1e-300, 0.95);
  if (out->dropout > 0 && out->hidden.empty()) {
    r.AddError(r.PathOf("dropout"), "needs hidden layers (it follows each one); add \"hidden\"");
  }
}

void ReadData(JsonFieldReader r, DataSpec* out) {
  if (!r.valid()) return;
  r.Enum("type", &out->type, true, {"fashion-mnist", "synthetic", "csv"});
  r.Double("validation_split", &out->validation_split, false, -1e-300, 0.9);
  if (out->type == "fashion-mnist") {
    r.RejectUnknown({"type", "path", "validation_split"});
    r.String("path", &out->path, false);
    if (out->path.empty()) r.AddError(r.PathOf("path"), "must name the folder of the IDX .gz files");
    out->features = kFashionMnistFeatures;
    out->classes = kFashionMnistClasses;
  } else if (out->type == "synthetic") {
    r.RejectUnknown({"type", "task", "samples", "test_samples", "features", "classes", "seed",
                     "validation_split"});
    r.Enum("task", &out->task, false, {"classification", "regression"});
    r.Int("samples", &out->samples, false, 1, 100'000'000);
    r.Int("test_samples", &out->test_samples, false, 1, 100'000'000);
    r.Int("features", &out->features, false, 1, 1 << 20);
    r.Int("classes", &out->classes, false, 2, 1 << 16);
    r.UInt("seed", &out->seed, false);
    if (out->task == "regression") out->classes = 1;
  } else if (out->type == "csv") {
    r.RejectUnknown({"type", "path", "test_path", "label_column", "feature_columns", "standardize",
                     "validation_split", "features", "classes"});
    out->path.clear();
    r.String("path", &out->path, true);
    r.String("test_path", &out->test_path, false);
    r.String("label_column", &out->label_column, true);
    // The CSV header is read by kiln-train (the scheduler never opens the file). The number of
    // features is the number of feature_columns when they are named, else data.features when
    // given (checked against the header), else 0: every column of the header but the label.
    out->features = 0;
    r.Int("features", &out->features, false, 1, 1 << 20);
    r.Int("classes", &out->classes, false, 1, 1 << 16);
    r.StringList("feature_columns", &out->feature_columns, false);
    const int named = static_cast<int>(out->feature_columns.size());
    if (named > 0 && out->features == 0) out->features = named;
    if (named > 0 && out->features != named) {
      r.AddError(r.PathOf("features"), std::to_string(out->features) + " does not match the " +
                                           std::to_string(named) + " feature_columns; leave it "
                                           "out (the names say how many)");
    }
    r.Bool("standardize", &out->standardize, false);
  }
}

void ReadOptimizer(JsonFieldReader r, OptimizerSpec* out) {
  if (!r.valid()) return;
  r.RejectUnknown({"type", "lr", "momentum", "nesterov", "weight_decay"});
  r.Enum("type", &out->type, true, {"adam", "adamw", "sgd"});
  r.Double("lr", &out->lr, true, 0.0, 100.0);
  for (const char* sgd_only : {"momentum", "nesterov"}) {
    if (r.Has(sgd_only) && out->type != "sgd") {
      r.AddError(r.PathOf(sgd_only), "applies only to \"sgd\"; remove it for \"" + out->type + "\"");
    }
  }
  r.Double("momentum", &out->momentum, false, -1e-300, 1.0);
  r.Bool("nesterov", &out->nesterov, false);
  if (out->nesterov && out->momentum <= 0) {
    r.AddError(r.PathOf("nesterov"), "needs momentum > 0");
  }
  r.Double("weight_decay", &out->weight_decay, false, -1e-300, 10.0);
}

void ReadLrSchedule(JsonFieldReader r, LrScheduleSpec* out) {
  if (!r.valid()) return;
  r.RejectUnknown({"type", "warmup_steps", "step_size", "gamma", "min_lr"});
  r.Enum("type", &out->type, true, {"constant", "step", "cosine"});
  r.Int("warmup_steps", &out->warmup_steps, false, 0, INT64_MAX);
  r.Int("step_size", &out->step_size, false, 1, INT64_MAX);
  r.Double("gamma", &out->gamma, false, 0.0, 1.0);
  r.Double("min_lr", &out->min_lr, false, -1e-300, 100.0);
}

void ReadTrain(JsonFieldReader r, TrainSpec* out) {
  if (!r.valid()) return;
  r.RejectUnknown({"epochs", "batch_size", "loss", "optimizer", "lr_schedule", "grad_clip_norm",
                   "seed", "max_steps", "bucket_mb", "stall_timeout_s"});
  r.Int("epochs", &out->epochs, true, 1, 100'000);
  r.Int("batch_size", &out->batch_size, true, 1, 1 << 20);
  r.Enum("loss", &out->loss, true, {"cross_entropy", "binary_cross_entropy", "mse"});
  ReadLrSchedule(r.Object("lr_schedule", false), &out->lr_schedule);
  r.Double("grad_clip_norm", &out->grad_clip_norm, false, -1e-300, 1e6);
  ReadOptimizer(r.Object("optimizer", true), &out->optimizer);
  r.UInt("seed", &out->seed, false);
  r.Int("max_steps", &out->max_steps, false, 0, INT64_MAX);
  r.Double("bucket_mb", &out->bucket_mb, false, 0.0, 1024.0);
  if (r.Has("stall_timeout_s")) {
    double seconds = 0;
    r.Double("stall_timeout_s", &seconds, true, 0.0, 86400.0);
    out->stall_timeout_s = seconds;
  }
}

void ReadServe(JsonFieldReader r, std::optional<ServeSpec>* out, std::vector<SpecError>* errors) {
  if (!r.valid()) return;
  ServeSpec serve;
  r.RejectUnknown({"service", "model_job", "model_step", "max_batch", "max_delay_ms"});
  r.String("service", &serve.service, true);
  r.Int("model_job", &serve.model_job, true, 1, INT64_MAX);
  r.Int("model_step", &serve.model_step, true, 0, INT64_MAX);
  r.Int("max_batch", &serve.max_batch, false, 1, 4096);
  r.Double("max_delay_ms", &serve.max_delay_ms, false, -1e-9, 10000);
  if (!serve.service.empty() && !IsValidServiceName(serve.service)) {
    errors->push_back({"serve.service", ServiceNameRule()});
  }
  *out = serve;
}

void ReadCheckpoint(JsonFieldReader r, CheckpointSpec* out) {
  if (!r.valid()) return;
  r.RejectUnknown({"every_steps", "keep_last", "keep_best", "storage"});
  r.Int("every_steps", &out->every_steps, false, 0, INT64_MAX);
  r.Int("keep_last", &out->keep_last, false, 1, 1000);
  JsonFieldReader best = r.Object("keep_best", false);
  if (best.valid()) {
    best.RejectUnknown({"count", "metric", "mode"});
    best.Int("count", &out->keep_best, true, 1, 1000);
    best.Enum("metric", &out->best_metric, false,
              {"test_accuracy", "test_loss", "val_accuracy", "val_loss", "loss"});
    best.Enum("mode", &out->best_mode, false, {"max", "min"});
    if (!best.Has("mode")) {
      out->best_mode = out->best_metric.find("accuracy") != std::string::npos ? "max" : "min";
    }
  }
  JsonFieldReader storage = r.Object("storage", false);
  if (storage.valid()) {
    storage.RejectUnknown({"type", "path"});
    storage.Enum("type", &out->storage, true, {"scheduler", "shared_fs"});
    storage.String("path", &out->storage_path, out->storage == "shared_fs");
    if (out->storage == "shared_fs" && !out->storage_path.empty() && out->storage_path[0] != '/') {
      storage.AddError(storage.PathOf("path"), "must be an absolute path, got \"" +
                                                   out->storage_path + "\"");
    }
  }
}

// Rules that relate fields to each other; run only when each field parsed on its own.
void CheckConsistency(const JobSpec& s, std::vector<SpecError>* errors) {
  if (s.model.type == "cnn") {
    const int side = s.ImageSide();
    if (s.data.type == "csv" && s.data.features == 0) {
      errors->push_back({"data.features", "is needed with model \"cnn\": the image size must be "
                                          "known before the file is read (a square number)"});
    } else if (side == 0) {
      errors->push_back({"model.type", "\"cnn\" needs square 1-channel images: fashion-mnist, or "
                                       "synthetic data whose features are a square number (got " +
                                       std::to_string(s.data.features) + ")"});
    } else {
      int remaining = side;
      for (size_t i = 0; i < s.model.conv.size(); ++i) {
        remaining /= s.model.conv[i].pool;
        if (remaining < 1) {
          errors->push_back({"model.conv[" + std::to_string(i) + "].pool",
                             "pools the " + std::to_string(side) + "x" + std::to_string(side) +
                                 " image below 1 pixel; use fewer or smaller pools"});
          break;
        }
      }
    }
  }
  if (s.train.loss == "binary_cross_entropy") {
    if (s.data.classes != 2) {
      errors->push_back({"train.loss", "\"binary_cross_entropy\" needs 2 classes, data has " +
                                           std::to_string(s.data.classes) +
                                           "; use \"cross_entropy\""});
    }
    if (s.model.output_units != 0 && s.model.output_units != 1) {
      errors->push_back({"model.output_units", "must be 1 with \"binary_cross_entropy\", got " +
                                                   std::to_string(s.model.output_units)});
    }
  } else if (s.train.loss == "mse") {
    if (s.data.type == "fashion-mnist" || (s.data.type == "synthetic" && s.data.task != "regression")) {
      errors->push_back({"train.loss", "\"mse\" is for regression: use synthetic data with "
                                       "\"task\": \"regression\", or csv with a numeric label"});
    }
  } else if (s.train.loss == "cross_entropy") {
    if (s.model.output_activation != "none") {
      errors->push_back({"model.output_activation",
                         "must be \"none\" with \"cross_entropy\" (it applies softmax itself)"});
    }
    if (s.model.output_units != 0 && s.model.output_units != s.data.classes) {
      errors->push_back({"model.output_units", "must equal the number of classes (" +
                                                   std::to_string(s.data.classes) + "), got " +
                                                   std::to_string(s.model.output_units)});
    }
  }
}

}  // namespace

bool IsValidServiceName(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  if (!std::islower(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::islower(static_cast<unsigned char>(c)) &&
        !std::isdigit(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
  }
  return name.back() != '-';
}

std::string ServiceNameRule() {
  return "must be 1-63 lowercase letters, digits or '-', starting with a letter and not ending "
         "with '-' (it is the model's name in URLs)";
}

int JobSpec::InputFeatures() const { return data.features; }
int JobSpec::ImageSide() const {
  int side = 1;
  while (side * side < data.features) ++side;
  return side * side == data.features ? side : 0;
}
int JobSpec::NumClasses() const { return data.classes; }
int JobSpec::OutputUnits() const {
  if (model.output_units > 0) return model.output_units;
  return train.loss == "binary_cross_entropy" || train.loss == "mse" ? 1 : data.classes;
}

SpecParseResult ParseJobSpec(const json& document) {
  SpecParseResult result;
  if (!document.is_object()) {
    result.errors.push_back({"(document)", "must be a JSON object, got " + JsonTypeName(document)});
    return result;
  }
  JobSpec& s = result.spec;
  JsonFieldReader root(document, "", &result.errors);
  root.RejectUnknown({"name", "resources", "model", "data", "train", "checkpoint", "max_retries",
                      "priority", "time_limit", "depends_on", "serve"});
  root.String("name", &s.name, true);
  if (root.Has("name") && document["name"].is_string() && !IsValidName(s.name, 64)) {
    result.errors.push_back({"name", "must be 1-64 characters of letters, digits, '-', '_' or '.', "
                                     "got \"" + s.name + "\""});
  }
  ReadResources(root.Object("resources", true), &s.resources);
  ReadModel(root.Object("model", true), document, &s.model, &result.errors);
  ReadData(root.Object("data", true), &s.data);
  ReadTrain(root.Object("train", true), &s.train);
  ReadCheckpoint(root.Object("checkpoint", false), &s.checkpoint);
  root.Int("max_retries", &s.max_retries, false, 0, 100);
  ReadServe(root.Object("serve", false), &s.serve, &result.errors);
  ReadScheduling(root, &s);
  if (result.errors.empty()) CheckConsistency(s, &result.errors);
  return result;
}

namespace {

// "line L, column C: <what the parser expected>" for a parse error at e.byte (1-based) of text.
std::string JsonErrorWhere(const std::string& text, const json::parse_error& e) {
  const size_t end = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  std::string detail = e.what();
  // nlohmann's text: "[json.exception.parse_error.101] parse error at line L, column C: <detail>"
  // ("parse error: <detail>" when it has no position).
  for (const std::string marker : {"column ", "parse error: "}) {
    const size_t at = detail.find(marker);
    if (at == std::string::npos) continue;
    const size_t colon = detail.find(": ", at);
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    break;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + detail;
}

}  // namespace

SpecParseResult ParseJobSpecText(const std::string& text) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    SpecParseResult result;
    result.errors.push_back({"(document)", "nests deeper than " + std::to_string(kMaxJsonDepth) +
                                               " levels"});
    return result;
  }
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    SpecParseResult result;
    result.errors.push_back({"(document)", "is not valid JSON: " + JsonErrorWhere(text, e)});
    return result;
  }
  return ParseJobSpec(document);
}

std::vector<std::string> SpecErrorStrings(const std::vector<SpecError>& errors) {
  std::vector<std::string> out;
  out.reserve(errors.size());
  for (const auto& e : errors) out.push_back(e.ToString());
  return out;
}

}  // namespace kiln
