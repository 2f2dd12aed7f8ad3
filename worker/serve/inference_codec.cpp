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

// Parses a request body into a DOM, except the numbers of inputs[0].data, which go straight into
// a float vector as they are read (a JSON value per number is most of what parsing a DOM costs).
// The rest of the document forms the DOM as usual; `data` is left there as an empty array, with
// `captured` set. A bad value in data is remembered (the first one) and parsing goes on, except
// an object in data, which ends it.
class RequestSax : public nlohmann::json_sax<json> {
 public:
  RequestSax(json* root, size_t limit) : root_(root), limit_(limit) {}

  std::vector<float> values;
  bool captured = false;
  bool duplicate = false;
  std::string error;         // the first bad value of data: "[17]: must be ..."
  std::string syntax_error;  // the JSON itself is not valid

  bool null() override { return Scalar(json(nullptr), "null"); }
  bool boolean(bool v) override { return Scalar(json(v), "boolean"); }
  bool number_integer(number_integer_t v) override {
    return Number(static_cast<double>(v), json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    return Number(static_cast<double>(v), json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return Number(v, json(v)); }
  bool string(string_t& v) override { return Scalar(json(v), "string"); }
  bool binary(binary_t&) override { return Scalar(json(), "binary"); }
  bool start_object(std::size_t) override {
    if (Capturing()) {
      Refuse("object");
      return false;
    }
    Open(json::object());
    return true;
  }
  bool key(string_t& k) override {
    key_ = k;
    // inputs[0].data: the root object, the array under "inputs", its first element.
    capture_next_ = k == "data" && open_.size() == 3 && open_keys_[1] == "inputs" &&
                    open_[1]->is_array() && open_[1]->size() == 1;
    return true;
  }
  bool end_object() override {
    Close();
    return true;
  }
  bool start_array(std::size_t) override {
    if (Capturing()) {
      StartCapture();
      ++capture_depth_;
      return true;
    }
    Open(json::array());
    return true;
  }
  bool end_array() override {
    if (capture_depth_ > 0) {
      --capture_depth_;
      return true;
    }
    Close();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception&) override {
    syntax_error = "not valid JSON (at byte " + std::to_string(position) + ")";
    return false;
  }

 private:
  bool Capturing() const { return capture_next_ || capture_depth_ > 0; }
  void StartCapture() {
    if (!capture_next_) return;
    capture_next_ = false;
    if (captured) duplicate = true;  // a second "data" key: refused, never merged
    captured = true;
    Place(json::array());
  }
  bool Number(double v, json value) {
    if (!Capturing()) {
      Place(std::move(value));
      return true;
    }
    StartCapture();  // "data": 3.5 is one value
    if (!error.empty()) return true;
    if (values.size() >= limit_) {
      error = ": more than " + std::to_string(limit_) + " values";
    } else if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
      error = "[" + std::to_string(values.size()) + "]: must be a finite FP32 number";
    } else {
      values.push_back(static_cast<float>(v));
    }
    return true;
  }
  bool Scalar(json value, const char* type) {
    if (Capturing()) {
      Refuse(type);
      return true;
    }
    Place(std::move(value));
    return true;
  }
  void Refuse(const char* type) {
    StartCapture();
    if (error.empty()) {
      error = "[" + std::to_string(values.size()) + "]: must be a number, got " + type;
    }
  }
  // Puts a value under the current key (or at the end of the current array, or as the root).
  json* Place(json value) {
    if (open_.empty()) {
      *root_ = std::move(value);
      return root_;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(value);
    return &slot;
  }
  void Open(json container) {
    // The key an element of an array sits under is its array's.
    const std::string under = open_.empty()              ? ""
                              : open_.back()->is_array() ? open_keys_.back()
                                                         : key_;
    open_.push_back(Place(std::move(container)));
    open_keys_.push_back(under);
  }
  void Close() {
    open_.pop_back();
    open_keys_.pop_back();
  }

  json* root_;
  size_t limit_;
  std::vector<json*> open_;             // containers being filled, outermost first
  std::vector<std::string> open_keys_;  // the key each sits under
  std::string key_;
  bool capture_next_ = false;
  int capture_depth_ = 0;
};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

Result<InferRequest> ParseInferRequest(std::string_view body, const ModelSignature& model) {
  const std::string text(body);
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return Invalid("(body)",
                   "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json doc;
  RequestSax sax(&doc, static_cast<size_t>(model.max_rows * model.features));
  const bool parsed = json::sax_parse(text, &sax);
  if (!sax.syntax_error.empty()) return Invalid("(body)", sax.syntax_error);
  auto data_error = [&] {
    const size_t colon = sax.error.find(':');
    return Invalid("inputs[0].data" + sax.error.substr(0, colon), sax.error.substr(colon + 2));
  };
  if (!parsed) return sax.error.empty() ? Invalid("(body)", "not valid JSON") : data_error();
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
    return Invalid("inputs",
                   "must be an array of exactly one input (\"" + model.input_name + "\")");
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
    return Invalid(at + ".shape",
                   "must be an array like [rows, " + std::to_string(model.features) + "]");
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
  if (!input.contains("data") || !sax.captured) return Invalid(at + ".data", "missing");
  if (sax.duplicate) return Invalid(at + ".data", "given more than once");
  if (!sax.error.empty()) return data_error();
  const size_t expected = static_cast<size_t>(rows * model.features);
  if (sax.values.size() != expected) {
    return Invalid(at + ".data", std::to_string(sax.values.size()) + " values, the shape " +
                                     ShapeText(shape) + " needs " + std::to_string(expected));
  }
  request.values = std::move(sax.values);
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
          {"inputs",
           {{{"name", model.input_name}, {"datatype", "FP32"}, {"shape", model.input_shape}}}},
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
