// kiln logs: attempt markers and Open MPI's noise.
#include <catch2/catch.hpp>

#include "scheduler/cli/log_filter.h"

using kiln::cli::LogFilter;

namespace {
std::vector<std::string> Run(LogFilter& f, int64_t attempt, const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& l : in) {
    for (auto& o : f.Add(attempt, "T", l)) out.push_back(o);
  }
  return out;
}
const std::string kRule(74, '-');
}  // namespace

TEST_CASE("each attempt starts with a marker, and Open MPI's banners and ORTE lines are dropped") {
  LogFilter f(false);
  auto first = Run(f, 1, {"[rank 0] training x", "[rank 0] error: cannot open /d/x.gz: No such file",
                          kRule, "MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD",
                          "with errorcode 1.", "", "NOTE: invoking MPI_ABORT causes Open MPI to "
                          "kill all MPI processes.", kRule,
                          "[n1:12345] 1 more process has sent help message help-mpi-api.txt",
                          "Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help"});
  CHECK(first == std::vector<std::string>{"==== attempt 1 (T) ====", "[rank 0] training x",
                                          "[rank 0] error: cannot open /d/x.gz: No such file"});
  auto second = Run(f, 2, {"[rank 0] training x"});
  CHECK(second == std::vector<std::string>{"==== attempt 2 (T) ====", "[rank 0] training x"});
  CHECK(f.Flush().empty());
}

TEST_CASE("a dashed block holding a rank's own line is kept, an unterminated one is flushed") {
  LogFilter f(false);
  auto kept = Run(f, 1, {kRule, "[rank 1] my table", kRule});
  CHECK(kept == std::vector<std::string>{"==== attempt 1 (T) ====", kRule, "[rank 1] my table",
                                         kRule});
  CHECK(Run(f, 1, {kRule, "MPI_ABORT was invoked on rank 0, half a banner"}).empty());
  CHECK(f.Flush() ==
        std::vector<std::string>{kRule, "MPI_ABORT was invoked on rank 0, half a banner"});
}

TEST_CASE("raw logs (kiln logs --raw) are every line as written, without markers") {
  LogFilter f(true);
  auto out = Run(f, 1, {"[rank 0] a", kRule, "MPI_ABORT was invoked", kRule});
  CHECK(out == std::vector<std::string>{"[rank 0] a", kRule, "MPI_ABORT was invoked", kRule});
}

TEST_CASE("banners that say something the ranks did not are kept: a rank killed by a signal") {
  LogFilter f(false);
  auto out = Run(f, 1, {kRule, "mpirun noticed that process rank 1 with PID 0 on node n1 exited "
                               "on signal 9 (Killed).", kRule,
                        "[epoch:3] a user line that looks like ORTE's"});
  CHECK(out == std::vector<std::string>{"==== attempt 1 (T) ====", kRule,
                                        "mpirun noticed that process rank 1 with PID 0 on node n1 "
                                        "exited on signal 9 (Killed).",
                                        kRule, "[epoch:3] a user line that looks like ORTE's"});
}
