// Human-readable rendering of the scheduler's JSON views. Pure: returns strings.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln::cli {

// Rows as columns padded to their widest cell (on screen: UTF-8 aware), two spaces apart.
std::string Table(const std::vector<std::vector<std::string>>& rows);
// A sweep as `kiln sweep show` prints it: its state, the leaderboard (best first) and how to use
// the best trial's checkpoint; `job` is `kiln show --json` of the sweep (sweep_output.cpp).
std::string FormatSweep(const nlohmann::json& job);

// A pending job's start estimate ("start_estimate" in its view): "~14:05" for a table, or with
// `explain` "est. 14:05: after jobs 31 and 32 end, on n1 and n2"; "-" when it has none.
std::string FormatStartEstimate(const nlohmann::json& job, bool explain);
// The queue as a table. An array's own line shows its tasks that have not started, folded
// ("12[40-999]"), or one line per task with `expand`; tasks with rows show as "12_3".
std::string FormatQueue(const nlohmann::json& jobs, bool expand = false);
std::string FormatJob(const nlohmann::json& job);
std::string FormatNodes(const nlohmann::json& nodes);
std::string FormatCheckpoints(const nlohmann::json& checkpoints);
// `kiln services`: one line per service, then one per replica that is not ready and why.
std::string FormatServices(const nlohmann::json& services);
// One line of live progress, e.g. "epoch 2/5  step 700/2340  loss 0.4120  test_acc 0.8610 ...".
std::string FormatProgress(const nlohmann::json& job);
// `kiln metrics`: the epoch reports, then the training reports, as tables.
std::string FormatMetricsHistory(const nlohmann::json& history);
// A one-line chart of `values` in at most `width` block characters (▁ lowest ... █ highest),
// averaging neighbours when there are more values than width; "" for no values.
std::string Sparkline(const std::vector<double>& values, size_t width);
// "loss  ▇▆▄▃▂▂▁  2.3014 -> 0.4121" from a metrics history, or "" when it has no loss.
std::string LossSparkline(const nlohmann::json& history, size_t width = 40);
// The terminal's live line: FormatProgress with a bar and percent of the steps done, and the
// time left when known, e.g. "job 1 RUNNING [######..............] 30%  epoch 2/5 ... ETA 1m20s".
std::string FormatProgressBar(const nlohmann::json& job, std::optional<double> eta_s,
                              int bar_width = 20);
// Seconds left at the rate from (step0 at t0) to (step at t): nullopt until steps advanced.
std::optional<double> EstimateSecondsLeft(int64_t step0, double t0_s, int64_t step, double t_s,
                                          int64_t total_steps);
// `line` cut to `columns` characters on screen (UTF-8 aware), so a redrawn line never wraps.
std::string FitToWidth(const std::string& line, size_t columns);
// "45s", "3m05s", "2h07m".
std::string FormatDuration(double seconds);
// "1.2 MB", "340 kB", "12 B".
std::string FormatBytes(int64_t bytes);
// Local time "YYYY-MM-DD HH:MM:SS" from Unix milliseconds, "-" for 0.
std::string FormatTime(int64_t unix_ms);
// The inverse for flags such as `kiln logs --since`: "2026-11-30 13:05[:07]" (or with a T) in local
// time, or a duration ago ("10m", "2h", "1d") counted back from now_ms. nullopt if neither.
std::optional<int64_t> ParseSince(const std::string& text, int64_t now_ms);

}  // namespace kiln::cli
