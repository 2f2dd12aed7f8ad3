// Which progress reports a job's metrics history keeps (scheduler/core/metric_history.h): any
// number of reports leaves at most max_points, spread evenly, and a restart resumes the series.
#include "scheduler/core/metric_history.h"

#include <catch2/catch.hpp>
#include <set>

using namespace kiln::core;
using nlohmann::json;

namespace {
// Feeds `reports` reports through NextHistoryPoint into a set that acts as the table.
std::set<int64_t> Feed(SeriesState& state, int64_t reports, int64_t max_points,
                       std::set<int64_t> table = {}) {
  for (int64_t i = 0; i < reports; ++i) {
    HistoryDecision d = NextHistoryPoint(state, max_points);
    if (!d.keep) continue;
    table.insert(d.ordinal);
    if (d.thin_to_stride) {
      for (auto it = table.begin(); it != table.end();) {
        it = *it % *d.thin_to_stride != 0 ? table.erase(it) : std::next(it);
      }
      ThinnedTo(state, static_cast<int64_t>(table.size()));
    }
  }
  return table;
}
}  // namespace

TEST_CASE("metrics history keeps every report until the cap, then halves evenly") {
  SeriesState state;
  auto table = Feed(state, 10, 16);
  CHECK(table.size() == 10);
  CHECK(state.stride == 1);

  SeriesState long_run;
  table = Feed(long_run, 100000, 400);
  CHECK(table.size() <= 400);
  CHECK(table.size() > 200);
  CHECK(*table.begin() == 0);
  // Even: consecutive kept ordinals are one stride apart, and the last is near the end.
  int64_t previous = -1;
  for (int64_t o : table) {
    if (previous >= 0) CHECK(o - previous == long_run.stride);
    previous = o;
  }
  CHECK(100000 - previous <= long_run.stride);
  CHECK(long_run.rows == static_cast<int64_t>(table.size()));
}

TEST_CASE("metrics history resumes its stride and ordinals from what was stored") {
  SeriesState state;
  auto table = Feed(state, 5000, 400);
  SeriesState restored = SeriesStateFrom({table.begin(), table.end()});
  CHECK(restored.stride == state.stride);
  CHECK(restored.rows == state.rows);
  CHECK(restored.next_ordinal <= state.next_ordinal);
  CHECK(restored.next_ordinal > state.next_ordinal - state.stride);
  auto more = Feed(restored, 5000, 400, table);
  CHECK(more.size() <= 400);
  CHECK(SeriesStateFrom({}).stride == 1);
  CHECK(SeriesStateFrom({0}).next_ordinal == 1);
}

TEST_CASE("reports go to the step or epoch series, with only their numeric fields") {
  CHECK(SeriesOfReport({{"step", 10}, {"loss", 0.5}, {"samples_per_s", 900.0}}) ==
        HistorySeries::kStep);
  CHECK(SeriesOfReport({{"step", 10}, {"epoch", 1}, {"test_accuracy", 0.8}}) ==
        HistorySeries::kEpoch);
  CHECK(SeriesOfReport({{"epoch", 1}, {"val_loss", 0.3}}) == HistorySeries::kEpoch);
  CHECK(!SeriesOfReport({{"step", 10}}).has_value());
  CHECK(!SeriesOfReport(json::array()).has_value());
  CHECK(!SeriesOfReport({{"loss", "low"}}).has_value());

  json crowded = {{"loss", 0.5}, {"step", 7}, {"test_accuracy", 0.9}};
  for (int i = 0; i < 40; ++i) crowded["a" + std::to_string(i)] = i;
  json kept = HistoryPointOf(crowded);
  CHECK(kept.size() == kMaxHistoryFields);
  CHECK(kept.contains("loss"));
  CHECK(kept.contains("step"));
  CHECK(kept.contains("test_accuracy"));

  json report = {{"loss", 0.5}, {"note", "text"}, {std::string(100, 'k'), 1}};
  for (int i = 0; i < 40; ++i) report["m" + std::to_string(i)] = i;
  json point = HistoryPointOf(report);
  CHECK(point.size() == kMaxHistoryFields);
  CHECK(!point.contains("note"));
  CHECK(point["loss"] == 0.5);
}
