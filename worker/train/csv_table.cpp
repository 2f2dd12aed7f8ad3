#include "worker/train/csv_table.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "worker/train/idx_reader.h"

namespace kiln::train {

namespace {

std::vector<std::string> SplitLine(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) {
    cell.erase(0, cell.find_first_not_of(" \t\""));
    cell.erase(cell.find_last_not_of(" \t\"\r") + 1);
    cells.push_back(cell);
  }
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

bool ParseDouble(const std::string& text, double* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end != nullptr && *end == '\0';
}

}  // namespace

Result<CsvTable> ParseCsvTable(const std::string& text, const std::string& name,
                               const std::string& label_column,
                               const std::vector<std::string>& feature_columns) {
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line)) return Status::InvalidArgument(name + ": empty file");
  const std::vector<std::string> header = SplitLine(line);
  auto column = [&](const std::string& wanted) -> int {
    auto it = std::find(header.begin(), header.end(), wanted);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int label = column(label_column);
  if (label < 0) {
    return Status::InvalidArgument(name + ": no column \"" + label_column + "\" in the header");
  }
  std::vector<int> features;
  CsvTable table;
  if (feature_columns.empty()) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (static_cast<int>(i) != label) {
        features.push_back(static_cast<int>(i));
        table.feature_names.push_back(header[i]);
      }
    }
  } else {
    for (const auto& f : feature_columns) {
      const int c = column(f);
      if (c < 0) return Status::InvalidArgument(name + ": no column \"" + f + "\" in the header");
      features.push_back(c);
      table.feature_names.push_back(f);
    }
  }
  int64_t line_number = 1;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::vector<std::string> cells = SplitLine(line);
    if (cells.size() != header.size()) {
      return Status::InvalidArgument(name + " line " + std::to_string(line_number) + ": " +
                                     std::to_string(cells.size()) + " values, the header has " +
                                     std::to_string(header.size()));
    }
    double value = 0;
    if (!ParseDouble(cells[static_cast<size_t>(label)], &value)) {
      return Status::InvalidArgument(name + " line " + std::to_string(line_number) + ", column \"" +
                                     label_column + "\": not a number");
    }
    table.labels.push_back(value);
    for (size_t f = 0; f < features.size(); ++f) {
      if (!ParseDouble(cells[static_cast<size_t>(features[f])], &value)) {
        return Status::InvalidArgument(name + " line " + std::to_string(line_number) +
                                       ", column \"" + table.feature_names[f] + "\": not a number");
      }
      table.features.push_back(static_cast<float>(value));
    }
    ++table.rows;
  }
  if (table.rows == 0) return Status::InvalidArgument(name + ": no data rows");
  return table;
}

Result<CsvTable> ReadCsvTable(const std::string& path, const std::string& label_column,
                              const std::vector<std::string>& feature_columns) {
  auto text = ReadMaybeGzipFile(path);
  if (!text.ok()) return text.status();
  return ParseCsvTable(*text, path, label_column, feature_columns);
}

}  // namespace kiln::train
