#include <catch2/catch.hpp>

#include "scheduler/cli/output.h"

using namespace kiln::cli;
using nlohmann::json;

TEST_CASE("byte sizes are shown in readable units") {
  CHECK(FormatBytes(12) == "12 B");
  CHECK(FormatBytes(2500) == "2.5 kB");
  CHECK(FormatBytes(2'800'000) == "2.8 MB");
}

TEST_CASE("the queue table has a header and one row per job with its reason") {
  json jobs = json::array({{{"id", 3}, {"name", "mnist"}, {"state", "PENDING"}, {"attempt", 0},
                            {"ranks", 2}, {"node", ""}, {"reason", "Waiting: no worker is up"},
                            {"metrics", json::object()}}});
  std::string table = FormatQueue(jobs);
  CHECK(table.rfind("ID", 0) == 0);
  CHECK(table.find("mnist") != std::string::npos);
  CHECK(table.find("Waiting: no worker is up") != std::string::npos);
}

TEST_CASE("the progress line shows epoch, step, loss and accuracy") {
  json job = {{"id", 1}, {"state", "RUNNING"},
              {"metrics", {{"epoch", 2}, {"epochs", 5}, {"step", 700}, {"total_steps", 2340},
                           {"loss", 0.41234}, {"test_accuracy", 0.8612}, {"samples_per_s", 3120.4}}}};
  CHECK(FormatProgress(job) ==
        "job 1 RUNNING  epoch 2/5  step 700/2340  loss 0.4123  test_acc 0.8612  3120 samples/s");
}

TEST_CASE("the checkpoint table lists step, accuracy and a short hash") {
  json cks = json::array({{{"step", 500}, {"epoch", 1}, {"attempt", 1},
                           {"metrics", {{"test_accuracy", 0.85}}}, {"bytes", 2800000},
                           {"sha256", std::string(64, 'c')}}});
  std::string table = FormatCheckpoints(cks);
  CHECK(table.find("500") != std::string::npos);
  CHECK(table.find("0.8500") != std::string::npos);
  CHECK(table.find(std::string(16, 'c')) != std::string::npos);
  CHECK(table.find(std::string(17, 'c')) == std::string::npos);
}
