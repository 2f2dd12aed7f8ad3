// kiln-predict: predictions from a checkpoint, one line per input row. `kiln predict` pulls the
// checkpoint and the job's spec and runs this; it can also be run by hand on a pulled checkpoint.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "worker/train/checkpoint.h"
#include "worker/train/predictor.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "kiln-predict: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln-predict: predict with a kiln checkpoint"};
  std::string spec_path, checkpoint, input, labels_path, output;
  bool json = false;
  int threads = 1;
  app.add_option("--spec", spec_path, "the job's spec (JSON)")->required();
  app.add_option("--checkpoint", checkpoint, "checkpoint file (kiln ckpt pull)")->required();
  app.add_option("--input", input, "CSV rows of features, or IDX images (.gz or not)")->required();
  app.add_option("--labels", labels_path, "true labels (IDX, or one per line): report accuracy");
  app.add_option("--output", output, "write predictions here instead of stdout");
  app.add_flag("--json", json, "one JSON object per prediction");
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(std::max(1, threads));

  auto text = kiln::ReadFile(spec_path);
  if (!text.ok()) return Fail(text.status().message());
  kiln::SpecParseResult parsed = kiln::ParseJobSpecText(*text);
  if (!parsed.ok()) return Fail("spec: " + parsed.errors[0].ToString());
  try {
    auto state = kiln::train::ReadCheckpointState(checkpoint);
    if (!state.ok()) return Fail(state.status().message());
    kiln::JobSpec spec = parsed.spec;
    if (spec.data.features == 0) {  // csv without data.features: the checkpoint knows
      spec.data.features = state->input.value("features", 0);
      if (spec.data.features <= 0) {
        return Fail("the spec has no data.features and the checkpoint does not record how many "
                    "inputs the model takes: add data.features to the spec given with --spec");
      }
    }
    const kiln::train::PredictionColumns trained = kiln::train::TrainedColumns(spec, state->input);
    auto rows = kiln::train::ReadPredictionInput(input, spec, trained);
    if (!rows.ok()) return Fail(rows.status().message());
    auto predictor = kiln::train::Predictor::Load(spec, checkpoint);
    if (!predictor.ok()) return Fail(predictor.status().message());
    std::vector<kiln::train::Prediction> predictions = predictor->Predict(rows->rows);

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
  }
  return 0;
}
