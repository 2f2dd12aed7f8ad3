#include "common/rank_failure.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace kiln {

bool IsPermanentFailure(StatusCode code) {
  return code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ||
         code == StatusCode::kPermissionDenied;
}

std::string FirstErrorLine(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  if (line.size() > 500) line = line.substr(0, 497) + "...";
  return line;
}

std::string RankFailureDir(const std::string& run_dir) { return run_dir + "/rank-failures"; }

Status WriteRankFailure(const std::string& run_dir, const RankFailure& failure) {
  KILN_RETURN_IF_ERROR(MakeDirs(RankFailureDir(run_dir)));
  nlohmann::json j = {{"rank", failure.rank},
                      {"error", FirstErrorLine(failure.error)},
                      {"permanent", failure.permanent}};
  return WriteFileAtomic(RankFailureDir(run_dir) + "/rank-" + std::to_string(failure.rank) +
                             ".json",
                         j.dump() + "\n", 0644);
}

std::optional<RankFailure> ReadFirstRankFailure(const std::string& run_dir) {
  std::optional<RankFailure> first;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(RankFailureDir(run_dir), ec)) {
    if (entry.path().extension() != ".json") continue;
    auto text = ReadFile(entry.path().string());
    if (!text.ok()) continue;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object() || !j.contains("rank") || !j["rank"].is_number_integer() ||
        !j.contains("error") || !j["error"].is_string()) {
      continue;
    }
    RankFailure f{j["rank"].get<int>(), FirstErrorLine(j["error"].get<std::string>()),
                  j.value("permanent", false)};
    if (!first || f.rank < first->rank) first = f;
  }
  return first;
}

}  // namespace kiln
