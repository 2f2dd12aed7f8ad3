#include "common/rank_failure.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/safe_open.h"

namespace kiln {

bool IsPermanentFailure(StatusCode code) {
  return code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ||
         code == StatusCode::kPermissionDenied;
}

std::string FirstErrorLine(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';  // no \r, ESC, tabs
  }
  if (line.size() > 500) {
    size_t cut = 497;  // not inside a UTF-8 sequence
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line = line.substr(0, cut) + "...";
  }
  return line;
}

namespace {
constexpr size_t kMaxMarkerBytes = 4096;
}  // namespace

std::string RankFailureDir(const std::string& run_dir) { return run_dir + "/rank-failures"; }

void ClearRankReports(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::remove_all(RankFailureDir(run_dir), ec);
  std::filesystem::remove(run_dir + "/stopped.json", ec);
}

Status WriteRankFailure(const std::string& run_dir, const RankFailure& failure) {
  KILN_RETURN_IF_ERROR(MakeDirs(RankFailureDir(run_dir)));
  nlohmann::json j = {{"rank", failure.rank},
                      {"error", FirstErrorLine(failure.error)},
                      {"permanent", failure.permanent}};
  // Invalid UTF-8 (a Latin-1 file name in an error) is replaced, never thrown.
  return WriteFileAtomic(RankFailureDir(run_dir) + "/rank-" + std::to_string(failure.rank) +
                             ".json",
                         j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                         0644);
}

std::optional<RankFailure> ReadFirstRankFailure(const std::string& run_dir) {
  std::optional<RankFailure> first;
  std::error_code ec;
  std::filesystem::directory_iterator it(RankFailureDir(run_dir), ec), end;
  for (; !ec && it != end; it.increment(ec)) {  // never throws
    const std::filesystem::directory_entry& entry = *it;
    if (entry.path().extension() != ".json") continue;
    // Written by the job's own processes: read with care (no symlink at any component below the
    // run dir, no FIFO, huge file, or field of the wrong type may hurt the agent). The folder may
    // have been made a link to elsewhere: listing it then names files, but none is read.
    auto text =
        ReadRegularRange(entry.path().string(), 0, kMaxMarkerBytes, kMaxMarkerBytes, run_dir);
    if (!text.ok()) continue;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (!j.is_object() || !j.contains("rank") || !j["rank"].is_number_integer() ||
        !j.contains("error") || !j["error"].is_string()) {
      continue;
    }
    const int64_t rank = j["rank"].get<int64_t>();
    if (rank < 0 || rank > (1 << 24)) continue;
    const bool permanent = j.contains("permanent") && j["permanent"].is_boolean() &&
                           j["permanent"].get<bool>();
    RankFailure f{static_cast<int>(rank), FirstErrorLine(j["error"].get<std::string>()),
                  permanent};
    if (!first || f.rank < first->rank) first = f;
  }
  return first;
}

Status WriteStopMarker(const std::string& run_dir, int64_t step) {
  return WriteFileAtomic(run_dir + "/stopped.json", nlohmann::json{{"step", step}}.dump() + "\n");
}

std::optional<int64_t> ReadStopMarker(const std::string& run_dir) {
  auto text = ReadSmallRegularFile(run_dir + "/stopped.json", kMaxMarkerBytes);
  if (!text.ok()) return std::nullopt;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) return std::nullopt;
  return j["step"].get<int64_t>();
}

}  // namespace kiln
