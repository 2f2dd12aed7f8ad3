// What `kiln logs` prints of a job's output: a marker where each attempt starts, and the job's
// own lines without Open MPI's noise (the MPI_ABORT, "Primary job terminated normally" and
// "mpirun detected" banners between lines of dashes, and ORTE's help-aggregation lines); every
// other banner, such as a rank killed by a signal, is kept. `--raw`: every line as written,
// no markers. Pure:
// lines in, lines out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::cli {

class LogFilter {
 public:
  explicit LogFilter(bool raw) : raw_(raw) {}

  // The lines to print for one log line of `attempt` (written at `time`, a formatted time).
  std::vector<std::string> Add(int64_t attempt, const std::string& time, const std::string& line);
  // Whatever is still held (an unterminated banner) once the log ends.
  std::vector<std::string> Flush();

 private:
  bool raw_;
  int64_t attempt_ = -1;
  bool in_banner_ = false;
  std::vector<std::string> banner_;
};

// True for a line of Open MPI's own making outside its banners ("[host:1234] 1 more process has
// sent help message ...", "Set MCA parameter \"orte_base_help_aggregate\" to 0 ...").
bool IsMpiNoiseLine(const std::string& line);
// True for a banner (the lines between two rules) that only repeats what the ranks' own error
// lines say: MPI_ABORT, "Primary job terminated normally", "mpirun detected ... non-zero status".
bool IsMpiNoiseBanner(const std::vector<std::string>& lines);
// True for the dashed line that opens and closes Open MPI's banners.
bool IsMpiBannerRule(const std::string& line);

}  // namespace kiln::cli
