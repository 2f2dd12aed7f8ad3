#include <catch2/catch.hpp>

#include "common/clock.h"
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

TEST_CASE("kiln show lists attempts with their nodes, outcome, exit code and resume step, in "
          "aligned columns") {
  json job = {{"id", 7}, {"name", "gang"}, {"state", "COMPLETED"}, {"attempt", 2},
              {"max_retries", 2}, {"ranks", 4}, {"node", "h3"}, {"reason", "all ranks exited 0"},
              {"attempts",
               {{{"attempt", 1}, {"nodes", {{{"node", "h3"}, {"ranks", 2}}, {{"node", "h1"}, {"ranks", 2}}}},
                 {"started_at", 1000}, {"ended_at", 2000}, {"outcome", "FAILED"},
                 {"exit_code", 137}, {"reason", "worker h1 is DOWN"}, {"resumed_from_step", -1}},
                {{"attempt", 2}, {"nodes", {{{"node", "h3"}, {"ranks", 2}}, {{"node", "h2"}, {"ranks", 2}}}},
                 {"started_at", 3000}, {"ended_at", 0}, {"outcome", "RUNNING"},
                 {"exit_code", -1}, {"reason", ""}, {"resumed_from_step", 140}}}}};
  const std::string text = FormatJob(job);
  CHECK(text.find("h3×2, h1×2") != std::string::npos);
  CHECK(text.find("worker h1 is DOWN") != std::string::npos);
  // The OUTCOME column starts at the same screen column in the header and in each row, though
  // "×" takes two bytes.
  auto column_of = [&](const std::string& line_start, const std::string& word) {
    const size_t line = text.find(line_start);
    const size_t end = text.find('\n', line);
    const std::string l = text.substr(line, end - line);
    size_t chars = 0;
    for (size_t i = 0; i < l.find(word); ++i) chars += (static_cast<unsigned char>(l[i]) & 0xC0) != 0x80;
    return chars;
  };
  CHECK(column_of("    #  ", "OUTCOME") == column_of("    1  ", "FAILED"));
  CHECK(column_of("    #  ", "OUTCOME") == column_of("    2  ", "RUNNING"));
  CHECK(text.find("140") != std::string::npos);
}

TEST_CASE("kiln logs --since reads a duration ago or a local time, and names nothing else") {
  const int64_t now = 1'800'000'000'000;
  CHECK(ParseSince("10m", now) == now - 600'000);
  CHECK(ParseSince("1h30m", now) == now - 5'400'000);
  auto at = ParseSince("2026-11-30 13:05", now);
  REQUIRE(at);
  CHECK(FormatTime(*at) == "2026-11-30 13:05:00");  // both in local time
  CHECK(ParseSince("2026-11-30T13:05:07", now) == *at + 7000);
  CHECK_FALSE(ParseSince("yesterday", now));
  CHECK_FALSE(ParseSince("2026-11-30 13:05 extra", now));
}

TEST_CASE("the loss sparkline spans lowest to highest and averages down to its width") {
  CHECK(kiln::cli::Sparkline({1, 2, 3, 4, 5, 6, 7, 8}, 8) == "▁▂▃▄▅▆▇█");
  CHECK(kiln::cli::Sparkline({8, 8, 1, 1}, 2) == "█▁");
  CHECK(kiln::cli::Sparkline({}, 10).empty());
  CHECK(kiln::cli::Sparkline({2, 2, 2}, 10) == "▄▄▄");
  nlohmann::json history = {{"step", {{{"loss", 2.0}}, {{"loss", 1.0}}, {{"loss", 0.5}}}}};
  CHECK(kiln::cli::LossSparkline(history) == "loss  █▃▁  2.0000 -> 0.5000");
  CHECK(kiln::cli::LossSparkline({{"step", nlohmann::json::array()}}).empty());
}

TEST_CASE("the terminal's progress bar shows percent done and the time left") {
  json job = {{"id", 3}, {"state", "RUNNING"},
              {"metrics", {{"epoch", 2}, {"epochs", 4}, {"step", 50}, {"total_steps", 200},
                           {"loss", 0.5}, {"samples_per_s", 1000.0}}}};
  CHECK(FormatProgressBar(job, 95.0, 8) ==
        "job 3 RUNNING [##......] 25%  epoch 2/4  step 50/200  loss 0.5000  1000 samples/s  "
        "ETA 1m35s");
  CHECK(FormatProgressBar(job, std::nullopt, 4).find("ETA") == std::string::npos);
  json pending = {{"id", 4}, {"state", "PENDING"}, {"reason", "Resources"}};
  CHECK(FormatProgressBar(pending, std::nullopt) == FormatProgress(pending));
  CHECK(EstimateSecondsLeft(10, 0.0, 60, 5.0, 160) == Approx(10.0));
  CHECK(!EstimateSecondsLeft(10, 0.0, 10, 5.0, 160));
  CHECK(FormatDuration(45) == "45s");
  CHECK(FormatDuration(185) == "3m05s");
  CHECK(FormatDuration(7620) == "2h07m");
  CHECK(FitToWidth("job 3 [##..]", 6) == "job 3 ");
  CHECK(FitToWidth("a×b×c", 3) == "a×b");
  CHECK(FitToWidth("short", 80) == "short");
}

TEST_CASE("the queue folds an array's tasks that have not started, or expands them") {
  json jobs =
      json::array({{{"id", 12},
                    {"name", "seeds"},
                    {"state", "PENDING"},
                    {"attempt", 0},
                    {"ranks", 1},
                    {"reason", "ArrayLimit: ..."},
                    {"array", {{"indices", "0-999"}, {"pending", "998-999"}, {"tasks", 1000}}}},
                   {{"id", 13},
                    {"name", "seeds"},
                    {"state", "RUNNING"},
                    {"attempt", 1},
                    {"ranks", 1},
                    {"array_job", 12},
                    {"array_index", 997},
                    {"reason", ""}},
                   {{"id", 14},
                    {"name", "other"},
                    {"state", "PENDING"},
                    {"attempt", 0},
                    {"ranks", 1},
                    {"reason", "Resources"},
                    {"start_estimate", {{"at", nullptr}}}}});
  const std::string folded = FormatQueue(jobs);
  CHECK(folded.find("12[998-999]") != std::string::npos);
  CHECK(folded.find("12_997") != std::string::npos);
  CHECK(folded.find("12_998") == std::string::npos);
  CHECK(folded.find("unknown") != std::string::npos);  // job 14's START
  const std::string expanded = FormatQueue(jobs, true);
  CHECK(expanded.find("12_998") != std::string::npos);
  CHECK(expanded.find("12_999") != std::string::npos);
  CHECK(expanded.find("12[") == std::string::npos);
}

TEST_CASE("a start estimate names the jobs whose ends make room and the nodes") {
  const kiln::Millis at = kiln::SystemClock().WallMs() + 3600 * 1000;
  json job = {{"start_estimate", {{"at", at}, {"after", {31, 32}}, {"nodes", {"n1", "n2"}}}}};
  const std::string text = FormatStartEstimate(job, true);
  CHECK(text.rfind("est. ", 0) == 0);
  CHECK(text.find(": after jobs 31 and 32 end, on n1 and n2") != std::string::npos);
  CHECK(FormatStartEstimate(job, false).rfind("~", 0) == 0);
  CHECK(FormatStartEstimate(json::object(), false) == "-");
}
