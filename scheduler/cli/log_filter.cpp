#include "scheduler/cli/log_filter.h"

#include <algorithm>

namespace kiln::cli {

bool IsMpiBannerRule(const std::string& line) {
  return line.size() >= 20 && line.find_first_not_of('-') == std::string::npos;
}

bool IsMpiNoiseLine(const std::string& line) {
  // "[host:12345] 1 more process has sent help message help-mpi-api.txt / mpi-abort"
  return (line.rfind("[", 0) == 0 &&
          (line.find("] 1 more process has sent help message") != std::string::npos ||
           line.find(" more processes have sent help message") != std::string::npos)) ||
         line.rfind("Set MCA parameter \"orte_base_help_aggregate\"", 0) == 0;
}

bool IsMpiNoiseBanner(const std::vector<std::string>& lines) {
  // Only the banners that repeat what the ranks' own error lines say. Others (a rank killed by a
  // signal, a launch that failed, a rank's own unprefixed output) are kept.
  static const char* const kNoise[] = {
      "MPI_ABORT was invoked on rank",
      "Primary job  terminated normally, but",
      "mpirun detected that one or more processes exited with non-zero status",
  };
  for (const auto& l : lines) {
    for (const char* n : kNoise) {
      if (l.rfind(n, 0) == 0) return true;
    }
  }
  return false;
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
      // A known noise banner is dropped unless a rank's own line ended up inside it.
      const bool ours = std::any_of(banner_.begin(), banner_.end(), [](const std::string& b) {
        return b.rfind("[rank ", 0) == 0;
      });
      if (ours || !IsMpiNoiseBanner(banner_)) {
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
