// The gradient sync engine under real mpirun: exact rank-valued sums over many buckets, and a
// stall report that names the late rank.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "tests/integration/local_cluster.h"

using kiln::testing::BinPath;
using kiln::testing::RunCommand;

namespace {
kiln::testing::CommandResult RunRanks(int ranks, std::vector<std::string> extra = {}) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks), "--oversubscribe",
                                   "--bind-to", "none", BinPath("kiln-sync-check")};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunCommand(argv, 120);
}
}  // namespace

TEST_CASE("buckets reduce to the exact mean of rank-valued gradients on 2 and 3 ranks") {
  for (int ranks : {2, 3}) {
    auto r = RunRanks(ranks);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("rank 0: 16 buckets on cpu, 0 failures") != std::string::npos);
  }
}

TEST_CASE("buckets staged through host memory, as on a GPU without CUDA-aware MPI, reduce exactly") {
  auto r = RunRanks(2, {"--stage"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("rank 0: 16 buckets staged on cpu, 0 failures") != std::string::npos);
  CHECK(r.out.find("rank 1: 16 buckets staged on cpu, 0 failures") != std::string::npos);
}

TEST_CASE("a rank that does not arrive is named in a stall report, and the step then completes") {
  auto r = RunRanks(2, {"--stall-rank", "1"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("[rank 0] stall: step 1") != std::string::npos);
  CHECK(r.err.find("ranks not arrived: 1 (last at step 0)") != std::string::npos);
}
