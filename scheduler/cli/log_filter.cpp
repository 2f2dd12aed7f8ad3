#include "scheduler/cli/log_filter.h"

#include <regex>

namespace kiln::cli {

bool IsMpiBannerRule(const std::string& line) {
  return line.size() >= 20 && line.find_first_not_of('-') == std::string::npos;
}

bool IsMpiNoiseLine(const std::string& line) {
  static const std::regex kOrtePrefix(R"(^\[[^\]\s]+:\d+\] .*)");
  return std::regex_match(line, kOrtePrefix) ||
         line.rfind("Set MCA parameter \"orte_base_help_aggregate\"", 0) == 0;
}

std::vector<std::string> LogFilter::Add(int64_t attempt, const std::string& time,
                                        const std::string& line) {
  if (raw_) return {line};
  std::vector<std::string> out;
  if (attempt != attempt_) {
    for (auto& held : Flush()) out.push_back(std::move(held));
    attempt_ = attempt;
    out.push_back("==== attempt " + std::to_string(attempt) + " (" + time + ") ====");
  }
  if (IsMpiBannerRule(line)) {
    if (in_banner_) {
      // A banner is Open MPI's unless a rank's own line ended up inside it.
      bool ours = false;
      for (const auto& b : banner_) ours = ours || b.rfind("[rank ", 0) == 0;
      if (ours) {
        out.push_back(line);
        for (auto& b : banner_) out.push_back(std::move(b));
        out.push_back(line);
      }
      banner_.clear();
      in_banner_ = false;
    } else {
      in_banner_ = true;
    }
    return out;
  }
  if (in_banner_) {
    banner_.push_back(line);
    if (banner_.size() > 200) {  // not a banner after all
      out.push_back(std::string(74, '-'));
      for (auto& b : banner_) out.push_back(std::move(b));
      banner_.clear();
      in_banner_ = false;
    }
    return out;
  }
  if (!IsMpiNoiseLine(line)) out.push_back(line);
  return out;
}

std::vector<std::string> LogFilter::Flush() {
  std::vector<std::string> out;
  if (in_banner_) {
    out.push_back(std::string(74, '-'));
    for (auto& b : banner_) out.push_back(std::move(b));
  }
  banner_.clear();
  in_banner_ = false;
  return out;
}

}  // namespace kiln::cli
