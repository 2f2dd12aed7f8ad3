// kiln-bench-array-dispatch: the scheduler's own time per task, from the submit of an array to
// each task's launch message, against the same number of separate jobs submitted one by one
// (the baseline); and a pass's time with a 10,000-task array waiting on a full node. The real
// SchedulerService and SQLite store, driven through the in-memory harness (no sockets, no
// processes): only the scheduler's work is timed.
//   kiln-bench-array-dispatch [--tasks N]   (default 1000)
// Prints human-readable lines, then one JSON line per measure.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/scheduler/service_harness.h"

using kiln::testing::FakeWorker;
using kiln::testing::ServiceHarness;
using kiln::testing::SmallSpec;
using namespace kiln::protocol;

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void PrintMeasure(const char* measure, double value, const char* unit, double baseline,
                  double target) {
  std::printf(
      "{\"bench\": \"array\", \"measure\": \"%s\", \"value\": %.4g, \"unit\": \"%s\", "
      "\"baseline\": %.4g, \"ratio\": %.4g, \"target\": %.4g, \"met\": %s}\n",
      measure, value, unit, baseline, baseline > 0 ? value / baseline : NAN, target,
      value <= target ? "true" : "false");
}

// Turns until `launches` launch messages reached the worker; the scheduler's time in ms.
double TurnUntilLaunched(ServiceHarness& h, FakeWorker& w, size_t launches) {
  double ms = 0;
  for (int i = 0; i < 100000 && w.launches().size() < launches; ++i) {
    const auto t0 = Clock::now();
    h.Turn(10);
    ms += Ms(Clock::now() - t0);
    w.Poll();
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tasks = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--tasks") == 0) tasks = std::stoll(argv[i + 1]);
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  spdlog::set_level(spdlog::level::err);  // a line per launch would time the terminal

  double array_ms = 0;
  {
    ServiceHarness h;
    FakeWorker w(h, "node-a", tasks);
    w.Register();
    h.Turn(0);
    w.Poll();
    SubmitRequest request{"bench-array", SmallSpec("t-${array_index}", 1), {}, {}, "", false};
    request.array = "0-" + std::to_string(tasks - 1);
    const auto t0 = Clock::now();
    h.Ask(h.alice(), request);  // the submit's turn
    array_ms = Ms(Clock::now() - t0) + TurnUntilLaunched(h, w, static_cast<size_t>(tasks));
    std::printf("array of %lld tasks: %.1f ms of scheduler time to %zu launches (%.3f ms/task)\n",
                static_cast<long long>(tasks), array_ms, w.launches().size(), array_ms / tasks);
  }
  double jobs_ms = 0;
  {
    ServiceHarness h;
    FakeWorker w(h, "node-a", tasks);
    w.Register();
    h.Turn(0);
    w.Poll();
    for (int64_t i = 0; i < tasks; ++i) {
      const auto t0 = Clock::now();
      h.Ask(h.alice(),
            SubmitRequest{"bench-job-" + std::to_string(i), SmallSpec("t", 1), {}, {}, "", false});
      jobs_ms += Ms(Clock::now() - t0);
    }
    jobs_ms += TurnUntilLaunched(h, w, static_cast<size_t>(tasks));
    std::printf("%lld separate jobs: %.1f ms of scheduler time to %zu launches (%.3f ms/job)\n",
                static_cast<long long>(tasks), jobs_ms, w.launches().size(), jobs_ms / tasks);
  }
  double idle_pass_ms = 0, array_pass_ms = 0;
  {
    // A full node: the array's tasks wait; each pass walks the queue again.
    ServiceHarness h;
    FakeWorker w(h, "node-a", 1);
    w.Register();
    h.Turn(0);
    h.Submit(SmallSpec("holder", 1));
    TurnUntilLaunched(h, w, 1);
    w.Start(w.launches()[0].job_id, w.launches()[0].attempt);
    auto timed_passes = [&] {
      double total = 0;
      for (int i = 0; i < 20; ++i) {
        w.Heartbeat();  // the node stays UP (and full)
        const auto t0 = Clock::now();
        h.Turn(1100);  // past the pass interval (1 s): one pass per turn
        total += Ms(Clock::now() - t0);
      }
      return total / 20;
    };
    idle_pass_ms = timed_passes();
    SubmitRequest request{"bench-pending", SmallSpec("p", 1), {}, {}, "", false};
    request.array = "0-9999";
    h.Ask(h.alice(), request);
    array_pass_ms = timed_passes();
    std::printf(
        "turn with a pass: %.3f ms with nothing waiting, %.3f ms with a 10,000-task "
        "array waiting\n",
        idle_pass_ms, array_pass_ms);
  }
  PrintMeasure("scheduler_ms_per_task_submit_to_launch", array_ms / tasks, "ms", jobs_ms / tasks,
               1.0);
  PrintMeasure("turn_ms_with_10000_pending_tasks", array_pass_ms, "ms", idle_pass_ms, 50.0);
  return 0;
}
