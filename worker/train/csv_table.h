// Reads a numeric CSV table with a header line: the label column and the feature columns chosen by
// name (default: every column but the label). Torch-free; errors name the file, line and column.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::train {

struct CsvTable {
  std::vector<std::string> feature_names;
  std::vector<float> features;  // row-major, rows x feature_names.size()
  std::vector<double> labels;
  int64_t rows = 0;
};

Result<CsvTable> ReadCsvTable(const std::string& path, const std::string& label_column,
                              const std::vector<std::string>& feature_columns);
// The same, from text already in memory (`name` is used in errors).
Result<CsvTable> ParseCsvTable(const std::string& text, const std::string& name,
                               const std::string& label_column,
                               const std::vector<std::string>& feature_columns);

}  // namespace kiln::train
