// Which of a job's progress reports are kept as its metrics history, so that a job of any length
// keeps at most about 2 x kMaxHistoryPoints points per series, spread evenly over its whole run.
// Pure: the service stores what these functions decide.
//
// A job has two series: "step" (the training reports: loss, samples/s, learning rate, every few
// seconds or steps) and "epoch" (one report per epoch: test or validation accuracy and loss).
// Reports of a series are numbered in arrival order (the ordinal); a report is kept when its
// ordinal is a multiple of the series' stride. When a series holds more than kMaxHistoryPoints,
// the stride doubles and the rows whose ordinal it no longer divides are deleted, which halves
// the series and keeps it even.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln::core {

constexpr int64_t kMaxHistoryPoints = 400;
constexpr size_t kMaxHistoryFields = 24;  // numeric fields of one point; the rest is dropped

enum class HistorySeries { kStep, kEpoch };
const char* HistorySeriesName(HistorySeries series);

struct SeriesState {
  int64_t stride = 1;
  int64_t next_ordinal = 0;
  int64_t rows = 0;  // points stored
};

// The series a report belongs to, or nullopt when it is neither (e.g. a report with no numbers).
std::optional<HistorySeries> SeriesOfReport(const nlohmann::json& report);

// The point to store for a report: its numeric fields (at most kMaxHistoryFields, names of at
// most 64 characters).
nlohmann::json HistoryPointOf(const nlohmann::json& report);

struct HistoryDecision {
  bool keep = false;
  int64_t ordinal = 0;
  // Set when the series grew past kMaxHistoryPoints: delete its rows whose ordinal this stride
  // does not divide, then tell ThinnedTo how many remain.
  std::optional<int64_t> thin_to_stride;
};

// Numbers the next report of a series and says whether to keep it; updates `state`.
HistoryDecision NextHistoryPoint(SeriesState& state, int64_t max_points = kMaxHistoryPoints);
void ThinnedTo(SeriesState& state, int64_t rows_left);

// The state of a series from the ordinals it has stored (after a restart): the stride is the
// largest power of two dividing all of them.
SeriesState SeriesStateFrom(const std::vector<int64_t>& stored_ordinals);

}  // namespace kiln::core
