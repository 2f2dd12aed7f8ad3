#include "scheduler/core/metric_history.h"

#include <algorithm>

namespace kiln::core {

using nlohmann::json;

const char* HistorySeriesName(HistorySeries series) {
  return series == HistorySeries::kStep ? "step" : "epoch";
}

std::optional<HistorySeries> SeriesOfReport(const json& report) {
  if (!report.is_object()) return std::nullopt;
  if (report.contains("loss") && report["loss"].is_number()) return HistorySeries::kStep;
  for (const auto& [key, value] : report.items()) {
    if (!value.is_number()) continue;
    const bool eval = key.size() > 9 && (key.compare(key.size() - 9, 9, "_accuracy") == 0);
    const bool eval_loss = key.size() > 5 && key.compare(key.size() - 5, 5, "_loss") == 0;
    if (eval || eval_loss || key == "epoch_time_s") return HistorySeries::kEpoch;
  }
  return std::nullopt;
}

json HistoryPointOf(const json& report) {
  json point = json::object();
  if (!report.is_object()) return point;
  auto take = [&](const std::string& key, const json& value) {
    if (point.size() >= kMaxHistoryFields || point.contains(key)) return;
    if (key.empty() || key.size() > 64 || !value.is_number()) return;
    point[key] = value;
  };
  // What the charts and tables read comes first, whatever else a report carries.
  for (const char* key : {"step", "epoch", "loss", "samples_per_s", "lr", "total_steps"}) {
    if (report.contains(key)) take(key, report[key]);
  }
  for (const auto& [key, value] : report.items()) {
    const bool eval = (key.size() > 9 && key.compare(key.size() - 9, 9, "_accuracy") == 0) ||
                      (key.size() > 5 && key.compare(key.size() - 5, 5, "_loss") == 0);
    if (eval) take(key, value);
  }
  for (const auto& [key, value] : report.items()) take(key, value);
  return point;
}

HistoryDecision NextHistoryPoint(SeriesState& state, int64_t max_points) {
  HistoryDecision d;
  d.ordinal = state.next_ordinal++;
  d.keep = d.ordinal % state.stride == 0;
  if (!d.keep) return d;
  ++state.rows;
  if (state.rows > max_points) {
    state.stride *= 2;
    d.thin_to_stride = state.stride;
  }
  return d;
}

void ThinnedTo(SeriesState& state, int64_t rows_left) {
  state.rows = std::max<int64_t>(0, rows_left);
}

SeriesState SeriesStateFrom(const std::vector<int64_t>& stored_ordinals) {
  SeriesState s;
  if (stored_ordinals.empty()) return s;
  int64_t max_ordinal = 0;
  int64_t stride = int64_t{1} << 40;
  for (int64_t o : stored_ordinals) {
    max_ordinal = std::max(max_ordinal, o);
    if (o <= 0) continue;
    int64_t p = 1;
    while (o % (p * 2) == 0 && p * 2 <= stride) p *= 2;
    stride = std::min(stride, p);
  }
  if (stride == int64_t{1} << 40) stride = 1;  // only ordinal 0 stored
  s.stride = stride;
  s.rows = static_cast<int64_t>(stored_ordinals.size());
  s.next_ordinal = max_ordinal + 1;
  return s;
}

}  // namespace kiln::core
