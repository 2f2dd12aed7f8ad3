// Human-readable rendering of the scheduler's JSON views. Pure: returns strings.
#pragma once

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

}  // namespace kiln::cli
