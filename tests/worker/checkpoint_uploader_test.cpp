#include <catch2/catch.hpp>

#include "common/clock.h"
#include "worker/agent/checkpoint_uploader.h"

using namespace kiln;
using namespace kiln::agent;

namespace {
// The step of each ckpt_begin the uploader sent.
std::vector<int64_t> BegunSteps(const std::vector<transport::Frames>& sent) {
  std::vector<int64_t> steps;
  for (const auto& frames : sent) {
    auto e = protocol::DecodeEnvelope(frames[0]);
    if (e.ok() && e->type == protocol::CheckpointBegin::kType) steps.push_back(e->body["step"]);
  }
  return steps;
}
}  // namespace

TEST_CASE("checkpoints that arrive faster than they upload are skipped down to the newest "
          "keep_last of the attempt, never the one in flight or another job's") {
  FakeClock clock;
  std::vector<transport::Frames> sent;
  std::vector<std::string> notes;
  CheckpointUploader uploader(
      clock, [&](transport::Frames f) { sent.push_back(std::move(f)); },
      [&](int64_t, int64_t, const std::string& line) { notes.push_back(line); });
  auto upload = [](int64_t job, int64_t step) {
    PendingUpload u;
    u.job_id = job;
    u.attempt = 1;
    u.step = step;
    u.path = "/nonexistent/step.pt";
    u.bytes = 10;
    u.sha256 = std::string(63, 'a') + static_cast<char>('0' + step % 10);
    u.keep_last = 2;
    return u;
  };
  for (int64_t step = 1; step <= 10; ++step) uploader.Enqueue(upload(7, step));
  uploader.Enqueue(upload(8, 100));  // another job's checkpoint is not dropped for job 7's
  CHECK(BegunSteps(sent) == std::vector<int64_t>{1});  // in flight since the first enqueue
  CHECK(!notes.empty());
  CHECK(notes.front().find("skipping step 2") != std::string::npos);
  // Finishing each upload in turn shows what was kept: 9 and 10 of job 7, then job 8's.
  for (int i = 0; i < 3; ++i) {
    auto e = protocol::DecodeEnvelope(sent.back()[0]);
    REQUIRE(e.ok());
    uploader.OnDone({e->body["sha256"], true, ""});
  }
  CHECK(BegunSteps(sent) == std::vector<int64_t>{1, 9, 10, 100});
}
