// The Open Inference Protocol's REST bodies (the KServe/Triton "v2" protocol) for one kiln model:
// an infer request parsed and checked into rows of FP32 features, and the replies (infer,
// metadata, errors). Pure: no I/O, no LibTorch, no clock; kiln-serve feeds it bodies.
//
// Request:  {"id"?, "inputs": [{"name", "shape": [N, F] | [N, ...] with product F, "datatype":
//            "FP32", "data": flat or nested numbers}], "outputs"?: [{"name"}], "parameters"?}
// Reply:    {"model_name", "model_version", "id"?, "outputs": [{"name": "label", "datatype":
//            "INT64", "shape": [N], "data"}, {"name": "probability", "datatype": "FP64", ...}]}
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kiln::serve {

// What a deployed model takes and gives.
struct ModelSignature {
  std::string name;     // the service's name: the model's name in URLs
  std::string version;  // "JOB:STEP" of the checkpoint
  std::string input_name = "input";
  int64_t features = 0;              // FP32 values per row
  std::vector<int64_t> input_shape;  // reported in metadata: [-1, features] or [-1, 1, side, side]
  int64_t classes = 0;               // 2 for a binary (sigmoid) model
  int64_t max_rows = 4096;           // rows one request may carry
  // What the checkpoint records of its input rows ({"features", "feature_columns",
  // "label_column"} for CSV data): clients read their files by it. Empty: nothing recorded.
  nlohmann::json input = nlohmann::json::object();
};

struct InferRequest {
  std::string id;  // echoed back; empty: none given
  int64_t rows = 0;
  std::vector<float> values;  // rows * features, row-major
  bool want_label = true;     // outputs asked for (all when the request names none)
  bool want_probability = true;
};

// One row's answer: the predicted class and its probability.
struct RowPrediction {
  int64_t label = 0;
  double probability = 0;  // FP64 on the wire: as kiln predict prints it
};

// Parses and checks a request body. Errors are InvalidArgument and name the field
// ("inputs[0].shape: ...", "inputs[0].data[17]: ..."), so the replica answers 400 and goes on.
Result<InferRequest> ParseInferRequest(std::string_view body, const ModelSignature& model);

nlohmann::json InferResponse(const ModelSignature& model, const InferRequest& request,
                             const std::vector<RowPrediction>& rows);
// GET /v2/models/NAME.
nlohmann::json ModelMetadata(const ModelSignature& model);
// GET /v2 (server metadata).
nlohmann::json ServerMetadata();
// The protocol's error body: {"error": message}.
std::string ErrorBody(const std::string& message);

}  // namespace kiln::serve
