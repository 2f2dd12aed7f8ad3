// Human-readable rendering of the scheduler's JSON views. Pure: returns strings.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::cli {

std::string FormatQueue(const nlohmann::json& jobs);
std::string FormatJob(const nlohmann::json& job);
std::string FormatNodes(const nlohmann::json& nodes);
std::string FormatCheckpoints(const nlohmann::json& checkpoints);
// One line of live progress, e.g. "epoch 2/5  step 700/2340  loss 0.4120  test_acc 0.8610 ...".
std::string FormatProgress(const nlohmann::json& job);
// "1.2 MB", "340 kB", "12 B".
std::string FormatBytes(int64_t bytes);
// Local time "YYYY-MM-DD HH:MM:SS" from Unix milliseconds, "-" for 0.
std::string FormatTime(int64_t unix_ms);
// The inverse for flags such as `kiln logs --since`: "2026-11-30 13:05[:07]" (or with a T) in local
// time, or a duration ago ("10m", "2h", "1d") counted back from now_ms. nullopt if neither.
std::optional<int64_t> ParseSince(const std::string& text, int64_t now_ms);

}  // namespace kiln::cli
