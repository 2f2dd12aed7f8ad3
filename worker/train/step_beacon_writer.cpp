#include "worker/train/step_beacon_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

namespace kiln::train {

namespace {
constexpr int64_t kWriteEveryMs = 200;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

StepBeaconWriter::StepBeaconWriter(const std::string& run_dir, int rank) {
  if (run_dir.empty()) return;
  (void)::mkdir(StepBeaconDir(run_dir).c_str(), 0700);  // another rank may have made it
  fd_ = ::open(StepBeaconPath(run_dir, rank).c_str(),
               O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  Write(true);
}

StepBeaconWriter::~StepBeaconWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void StepBeaconWriter::Step(int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  beacon_.step = step;
  ++beacon_.beat;
  Write(false);
}

void StepBeaconWriter::Beat() {
  std::lock_guard<std::mutex> lock(mu_);
  ++beacon_.beat;
  Write(false);
}

void StepBeaconWriter::Waiting(bool waiting) {
  std::lock_guard<std::mutex> lock(mu_);
  if (beacon_.waiting == waiting) return;
  beacon_.waiting = waiting;
  Write(true);
}

void StepBeaconWriter::Write(bool force) {
  if (fd_ < 0) return;
  const int64_t now = NowMs();
  if (!force && now - written_at_ms_ < kWriteEveryMs) return;
  written_at_ms_ = now;
  const std::string line = FormatStepBeacon(beacon_);
  (void)::pwrite(fd_, line.data(), line.size(), 0);
}

}  // namespace kiln::train
