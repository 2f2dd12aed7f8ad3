#include "worker/serve/inference_codec.h"

#include <cmath>
#include <limits>

#include "common/json_fields.h"

namespace kiln::serve {

using nlohmann::json;

namespace {

std::string TypeName(const json& v) { return v.type_name(); }

Status Invalid(const std::string& field, const std::string& message) {
  return Status::InvalidArgument(field + ": " + message);
}

// Appends the numbers of `data` (flat or nested arrays) to `out`, naming the first bad element
// by its flat index. Stops (and says so) once more than `limit` values were seen.
Status Flatten(const json& data, const std::string& field, size_t limit, std::vector<float>* out) {
  if (data.is_array()) {
    for (const json& element : data) {
      KILN_RETURN_IF_ERROR(Flatten(element, field, limit, out));
    }
    return Status::Ok();
  }
  if (!data.is_number() || data.is_boolean()) {
    return Invalid(field + "[" + std::to_string(out->size()) + "]",
                   "must be a number, got " + TypeName(data));
  }
  if (out->size() >= limit) {
    return Invalid(field, "more values than the shape holds (" + std::to_string(limit) + ")");
  }
  const double v = data.get<double>();
  if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
    return Invalid(field + "[" + std::to_string(out->size()) + "]",
                   "must be a finite FP32 number");
  }
  out->push_back(static_cast<float>(v));
  return Status::Ok();
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

Result<InferRequest> ParseInferRequest(std::string_view body, const ModelSignature& model) {
  const std::string text(body);
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return Invalid("(body)", "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Invalid("(body)", "not valid JSON");
  if (!doc.is_object()) return Invalid("(body)", "must be a JSON object, got " + TypeName(doc));
  InferRequest request;
  for (const auto& [key, value] : doc.items()) {
    if (key == "id") {
      if (!value.is_string()) return Invalid("id", "must be a string, got " + TypeName(value));
      request.id = value.get<std::string>();
    } else if (key == "parameters") {
      if (!value.is_object()) return Invalid("parameters", "must be an object");
    } else if (key != "inputs" && key != "outputs") {
      return Invalid(key, "unknown field; a request has id, inputs, outputs and parameters");
    }
  }
  if (!doc.contains("inputs")) {
    return Invalid("inputs", "missing: give one input named \"" + model.input_name + "\"");
  }
  const json& inputs = doc["inputs"];
  if (!inputs.is_array() || inputs.size() != 1) {
    return Invalid("inputs", "must be an array of exactly one input (\"" + model.input_name +
                                 "\")");
  }
  const json& input = inputs[0];
  const std::string at = "inputs[0]";
  if (!input.is_object()) return Invalid(at, "must be an object");
  for (const auto& [key, value] : input.items()) {
    (void)value;
    if (key != "name" && key != "shape" && key != "datatype" && key != "data" &&
        key != "parameters") {
      return Invalid(at + "." + key, "unknown field; an input has name, shape, datatype and data");
    }
  }
  if (!input.contains("name") || !input["name"].is_string()) {
    return Invalid(at + ".name", "must be the string \"" + model.input_name + "\"");
  }
  if (input["name"].get<std::string>() != model.input_name) {
    return Invalid(at + ".name", "unknown input \"" + input["name"].get<std::string>() +
                                     "\"; the model's input is \"" + model.input_name + "\"");
  }
  if (!input.contains("datatype") || !input["datatype"].is_string()) {
    return Invalid(at + ".datatype", "must be \"FP32\"");
  }
  if (input["datatype"].get<std::string>() != "FP32") {
    return Invalid(at + ".datatype",
                   "must be \"FP32\", got \"" + input["datatype"].get<std::string>() + "\"");
  }
  if (!input.contains("shape") || !input["shape"].is_array() || input["shape"].empty()) {
    return Invalid(at + ".shape", "must be an array like [rows, " +
                                      std::to_string(model.features) + "]");
  }
  std::vector<int64_t> shape;
  for (const json& d : input["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return Invalid(at + ".shape", "must hold non-negative integers");
    }
    shape.push_back(d.get<int64_t>());
  }
  const int64_t rows = shape[0];
  // The product of the other dimensions, stopped (never overflowing) once past the features.
  int64_t per_row = 1;
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] < 1 || shape[i] > model.features || per_row > model.features) {
      per_row = -1;
      break;
    }
    per_row *= shape[i];
  }
  if (shape.size() < 2 || per_row != model.features) {
    return Invalid(at + ".shape", ShapeText(shape) + " does not fit the model's input " +
                                      ShapeText(model.input_shape) + ": each row must hold " +
                                      std::to_string(model.features) + " values");
  }
  if (rows < 1 || rows > model.max_rows) {
    return Invalid(at + ".shape", "rows (" + std::to_string(rows) + ") must be 1.." +
                                      std::to_string(model.max_rows));
  }
  if (!input.contains("data")) return Invalid(at + ".data", "missing");
  const size_t expected = static_cast<size_t>(rows * model.features);
  request.values.reserve(expected);
  KILN_RETURN_IF_ERROR(Flatten(input["data"], at + ".data", expected, &request.values));
  if (request.values.size() != expected) {
    return Invalid(at + ".data", std::to_string(request.values.size()) + " values, the shape " +
                                     ShapeText(shape) + " needs " + std::to_string(expected));
  }
  request.rows = rows;
  if (doc.contains("outputs")) {
    const json& outputs = doc["outputs"];
    if (!outputs.is_array()) return Invalid("outputs", "must be an array of {\"name\": ...}");
    if (!outputs.empty()) request.want_label = request.want_probability = false;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string field = "outputs[" + std::to_string(i) + "].name";
      if (!outputs[i].is_object() || !outputs[i].contains("name") ||
          !outputs[i]["name"].is_string()) {
        return Invalid(field, "must be \"label\" or \"probability\"");
      }
      const std::string name = outputs[i]["name"].get<std::string>();
      if (name == "label") {
        request.want_label = true;
      } else if (name == "probability") {
        request.want_probability = true;
      } else {
        return Invalid(field, "unknown output \"" + name +
                                  "\"; the model's outputs are \"label\" and \"probability\"");
      }
    }
  }
  return request;
}

json InferResponse(const ModelSignature& model, const InferRequest& request,
                   const std::vector<RowPrediction>& rows) {
  json outputs = json::array();
  const int64_t n = static_cast<int64_t>(rows.size());
  if (request.want_label) {
    std::vector<int64_t> labels;
    labels.reserve(rows.size());
    for (const auto& r : rows) labels.push_back(r.label);
    outputs.push_back({{"name", "label"}, {"datatype", "INT64"}, {"shape", {n}}, {"data", labels}});
  }
  if (request.want_probability) {
    std::vector<double> p;
    p.reserve(rows.size());
    for (const auto& r : rows) p.push_back(r.probability);
    outputs.push_back({{"name", "probability"}, {"datatype", "FP64"}, {"shape", {n}}, {"data", p}});
  }
  json reply = {{"model_name", model.name}, {"model_version", model.version}, {"outputs", outputs}};
  if (!request.id.empty()) reply["id"] = request.id;
  return reply;
}

json ModelMetadata(const ModelSignature& model) {
  return {{"name", model.name},
          {"versions", {model.version}},
          {"platform", "kiln_libtorch"},
          {"inputs", {{{"name", model.input_name}, {"datatype", "FP32"}, {"shape", model.input_shape}}}},
          {"outputs",
           {{{"name", "label"}, {"datatype", "INT64"}, {"shape", {-1}}},
            {{"name", "probability"}, {"datatype", "FP64"}, {"shape", {-1}}}}},
          {"parameters",
           {{"classes", model.classes},
            {"max_rows_per_request", model.max_rows},
            {"input", model.input}}}};
}

json ServerMetadata() {
  return {{"name", "kiln-serve"}, {"version", "1"}, {"extensions", json::array()}};
}

std::string ErrorBody(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace kiln::serve
