// The job spec: what a user submits (JSON, see docs/job-spec.md) and what kiln-train runs.
// Parsing and validation are one pure step: ParseJobSpec reads every field, checks it, and returns
// either the typed spec or every error found, each naming the field path, what was wrong and what
// is allowed ("resources.ranks: must be >= 1, got 0"). Unknown fields are errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"

namespace kiln {

// The largest spec the scheduler accepts, as compact JSON. Real specs are a few KiB.
constexpr size_t kMaxSpecBytes = 256 << 10;

struct ResourceSpec {
  int ranks = 1;
  int gpus_per_rank = 0;
  int threads_per_rank = 0;  // intra-op threads of each rank (LibTorch and BLAS); 0: the agent
                             // gives each rank cores-on-the-node / ranks-on-the-node
  int cpus_per_rank = 1;        // worker slots each rank occupies
  int64_t memory_per_rank = 0;  // bytes; 0: not accounted
  int ranks_per_node = 0;       // 0: any split; else exactly this many ranks on each node
  std::string placement = "pack";   // pack (fewest nodes) | spread (one rank per node first)
  std::vector<std::string> labels;  // a node must carry every one (kiln-worker --label); sorted
};

struct ConvBlockSpec {
  int channels = 32;
  int kernel = 5;  // square, "same" padding
  int pool = 2;    // max-pool window and stride; 1: none
};

struct ModelSpec {
  std::string type = "mlp";      // mlp | cnn | torchscript
  std::string path;              // torchscript: the module file (its parameters are trained)
  std::vector<ConvBlockSpec> conv;  // cnn: convolution blocks, then the hidden fc layers
  std::vector<int> hidden;
  std::string activation = "relu";         // relu | tanh | sigmoid | gelu
  double dropout = 0.0;                    // after each hidden layer's activation; 0: none
  int output_units = 0;                    // 0: derived from data and loss
  std::string output_activation = "none";  // none | sigmoid
};

struct DataSpec {
  std::string type;  // fashion-mnist | synthetic | csv
  std::string task = "classification";  // synthetic: classification | regression
  // csv: a header line, then rows; the label column, and the feature columns (default: the rest)
  std::string label_column;
  std::vector<std::string> feature_columns;
  std::string test_path;     // csv: a second file with the same columns (optional)
  bool standardize = false;  // csv: scale features by the training split's mean and deviation
  double validation_split = 0.0;  // hold out this fraction of the training rows for evaluation
  std::string path = "/usr/share/datasets/fashion-mnist";
  int64_t samples = 4096;       // synthetic: training samples
  int64_t test_samples = 1024;  // synthetic: test samples
  int features = 100;           // synthetic: input features (fashion-mnist: 784, fixed)
  int classes = 2;              // synthetic: classes (fashion-mnist: 10, fixed)
  uint64_t seed = 7;            // synthetic: generator seed
};

struct OptimizerSpec {
  std::string type = "adam";  // adam | adamw | sgd
  double lr = 0.001;
  double momentum = 0.0;      // sgd only
  bool nesterov = false;      // sgd only, needs momentum
  double weight_decay = 0.0;  // L2 for adam and sgd, decoupled for adamw
};

struct LrScheduleSpec {
  std::string type = "constant";  // constant | step | cosine
  int64_t warmup_steps = 0;       // linear ramp from 0 to lr over these steps
  int64_t step_size = 1000;       // step: multiply by gamma every step_size steps
  double gamma = 0.1;
  double min_lr = 0.0;            // cosine: the floor reached at the last step
};

struct TrainSpec {
  int epochs = 1;
  int batch_size = 32;  // per rank; the global batch is batch_size * ranks
  std::string loss;     // cross_entropy | binary_cross_entropy | mse
  OptimizerSpec optimizer;
  LrScheduleSpec lr_schedule;
  double grad_clip_norm = 0.0;  // 0: no clipping; else clip the global gradient norm to this
  uint64_t seed = 0;
  int64_t max_steps = 0;  // 0: no limit beyond epochs
  double bucket_mb = 4.0;         // gradient allreduce bucket size
  // A rank that makes no step for this long is hung: its agent fails the attempt (and ranks
  // waiting this long for an allreduce report it on stderr). Absent: the larger of 60 s and 20
  // times the median step time.
  std::optional<double> stall_timeout_s;
  double StallReportAfterS() const { return stall_timeout_s.value_or(60.0); }
};

struct CheckpointSpec {
  int64_t every_steps = 0;  // 0: only at the end
  int keep_last = 3;
  int keep_best = 0;                       // also keep this many best by best_metric
  std::string best_metric = "test_accuracy";
  std::string best_mode = "max";           // max | min
  std::string storage = "scheduler";       // scheduler (bytes uploaded) | shared_fs (path recorded)
  std::string storage_path;                // shared_fs: a folder every node and the scheduler see
};

// Present only in the spec of a service's replica, which the scheduler writes (kiln deploy): the
// job runs kiln-serve with the checkpoint (model_job, model_step) instead of training.
struct ServeSpec {
  std::string service;    // the service's name (the model's name in URLs)
  int64_t model_job = 0;  // the checkpoint served
  int64_t model_step = 0;
  int max_batch = 32;       // rows per forward pass at most
  double max_delay_ms = 2;  // longest a request waits for others to batch with
};

struct JobSpec {
  std::string name;
  ResourceSpec resources;
  ModelSpec model;
  DataSpec data;
  TrainSpec train;
  CheckpointSpec checkpoint;
  int max_retries = 0;
  int priority = 0;                  // higher goes first; -1000..1000
  int64_t time_limit_s = 0;          // 0: none; past it the job is stopped and FAILED (TIMEOUT)
  std::vector<int64_t> depends_on;   // job ids that must COMPLETE before this one starts
  std::optional<ServeSpec> serve;    // a service's replica (written by the scheduler only)

  // Derived from data (and loss, for the output layer).
  int InputFeatures() const;
  int ImageSide() const;  // side of the square 1-channel image the features form (cnn)
  int NumClasses() const;
  int OutputUnits() const;
  bool IsRegression() const { return train.loss == "mse"; }
};

using SpecError = FieldError;

struct SpecParseResult {
  JobSpec spec;                  // meaningful only when errors is empty
  std::vector<SpecError> errors;
  bool ok() const { return errors.empty(); }
};

SpecParseResult ParseJobSpec(const nlohmann::json& document);
// Parses JSON text first; a syntax error is reported as one error on field "(document)".
SpecParseResult ParseJobSpecText(const std::string& text);

// A service's name: 1-63 of [a-z0-9-], starting with a letter, not ending with '-'.
bool IsValidServiceName(const std::string& name);
std::string ServiceNameRule();

std::vector<std::string> SpecErrorStrings(const std::vector<SpecError>& errors);

}  // namespace kiln
