// Data parallelism is exact: a 2-rank step over batch B per rank equals a 1-rank step over 2B.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::BinPath;
using kiln::testing::RunCommand;
using nlohmann::json;

namespace {

std::vector<float> ReadFloats(const std::string& path) {
  auto bytes = kiln::ReadFile(path);
  REQUIRE(bytes.ok());
  std::vector<float> out(bytes->size() / sizeof(float));
  std::memcpy(out.data(), bytes->data(), out.size() * sizeof(float));
  return out;
}

void RunTrainer(const std::string& dir, int ranks, const json& spec, int max_steps = 1,
                const std::string& resume = "") {
  std::filesystem::create_directories(dir);
  const std::string spec_path = dir + "/spec.json";
  std::ofstream(spec_path) << spec.dump();
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks), "--oversubscribe",
                                   "--bind-to", "none", BinPath("kiln-train"), "--spec", spec_path,
                                   "--run-dir", dir, "--max-steps", std::to_string(max_steps),
                                   "--threads", "1", "--dump-params", dir + "/params"};
  if (!resume.empty()) argv.insert(argv.end(), {"--resume", resume});
  auto r = RunCommand(argv, 120);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_CASE("after one step both ranks hold identical parameters, equal to one single-rank step "
          "over the same global batch") {
  char pattern[] = "/tmp/kiln-mpi-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  json spec = kiln::testing::SyntheticSpec("equivalence", 2, 1, 512);
  spec["train"]["optimizer"] = {{"type", "sgd"}, {"lr", 0.5}};
  spec["train"]["batch_size"] = 32;
  RunTrainer(dir + "/two", 2, spec);
  spec["resources"]["ranks"] = 1;
  spec["train"]["batch_size"] = 64;
  RunTrainer(dir + "/one", 1, spec);

  auto rank0 = ReadFloats(dir + "/two/params.rank0");
  auto rank1 = ReadFloats(dir + "/two/params.rank1");
  auto single = ReadFloats(dir + "/one/params.rank0");
  REQUIRE(rank0.size() == 20 * 32 + 32 + 32 * 3 + 3);
  REQUIRE(rank0.size() == rank1.size());
  REQUIRE(rank0.size() == single.size());
  CHECK(rank0 == rank1);
  double max_diff = 0;
  for (size_t i = 0; i < rank0.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(rank0[i] - single[i])));
  }
  CHECK(max_diff <= 1e-5);
  // The step moved the parameters: the comparison is not between two untouched initial states.
  spec["train"]["optimizer"]["lr"] = 1e-12;  // validation requires lr > 0
  RunTrainer(dir + "/still", 1, spec);
  auto untouched = ReadFloats(dir + "/still/params.rank0");
  double moved = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    moved = std::max(moved, static_cast<double>(std::fabs(untouched[i] - single[i])));
  }
  CHECK(moved > 1e-3);
  std::filesystem::remove_all(dir);
}

TEST_CASE("training 2N steps straight and N steps, resume, N more give bit-identical parameters") {
  char pattern[] = "/tmp/kiln-resume-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  json spec = kiln::testing::SyntheticSpec("resume", 2, 10, 512);  // 16 steps per epoch
  spec["checkpoint"] = {{"every_steps", 24}, {"keep_last", 5}};
  const double dropout = GENERATE(0.0, 0.3);  // with dropout, the masks must replay too
  if (dropout > 0) spec["model"]["dropout"] = dropout;
  RunTrainer(dir + "/straight", 2, spec, 48);
  RunTrainer(dir + "/first", 2, spec, 24);
  // The resumed run crosses an epoch boundary mid-way (24 = 1.5 epochs): the position inside the
  // epoch and the optimizer state must both carry over.
  RunTrainer(dir + "/second", 2, spec, 48, dir + "/first/checkpoints/step-0000000024.pt");
  for (const char* rank : {"rank0", "rank1"}) {
    auto straight = ReadFloats(dir + "/straight/params." + rank);
    auto resumed = ReadFloats(dir + "/second/params." + rank);
    REQUIRE(straight.size() == resumed.size());
    CHECK(straight == resumed);
  }
  auto first = ReadFloats(dir + "/first/params.rank0");
  CHECK(first != ReadFloats(dir + "/straight/params.rank0"));  // the second half did train
  std::filesystem::remove_all(dir);
}

TEST_CASE("resuming at a different world size keeps the global batch and continues the run") {
  char pattern[] = "/tmp/kiln-reshape-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  json spec = kiln::testing::SyntheticSpec("reshape", 2, 10, 512);
  spec["train"]["optimizer"] = {{"type", "sgd"}, {"lr", 0.1}};
  spec["checkpoint"] = {{"every_steps", 24}, {"keep_last", 5}};
  RunTrainer(dir + "/straight", 2, spec, 48);
  RunTrainer(dir + "/first", 2, spec, 24);
  // 2 ranks x 16 -> 1 rank x 32: the same samples per step, in the same order.
  RunTrainer(dir + "/second", 1, spec, 48, dir + "/first/checkpoints/step-0000000024.pt");
  auto straight = ReadFloats(dir + "/straight/params.rank0");
  auto reshaped = ReadFloats(dir + "/second/params.rank0");
  REQUIRE(straight.size() == reshaped.size());
  double max_diff = 0;
  for (size_t i = 0; i < straight.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(straight[i] - reshaped[i])));
  }
  CHECK(max_diff <= 1e-4);  // equal up to the order of float additions
  // 3 ranks cannot share 32 samples per step: refused with the reason.
  std::filesystem::create_directories(dir + "/third");
  std::ofstream(dir + "/third/spec.json") << spec.dump();
  auto r = RunCommand({"mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none",
                       BinPath("kiln-train"), "--spec", dir + "/third/spec.json", "--run-dir",
                       dir + "/third", "--resume", dir + "/first/checkpoints/step-0000000024.pt"},
                      120);
  CHECK(r.exit_code != 0);
  CHECK((r.out + r.err).find("3 ranks cannot share evenly") != std::string::npos);
  std::filesystem::remove_all(dir);
}
