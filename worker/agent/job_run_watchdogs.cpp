// JobRun's watchdogs: hang detection (step beacons, worker/agent/stall_watch.h) and the memory
// limit (worker/agent/memory_watch.h). Each kills the attempt at once with its finding as the
// exit's rank error.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/step_beacon.h"
#include "worker/agent/job_run.h"

namespace kiln::agent {

void JobRun::WatchForStalls(Millis now) {
  if (kill_deadline_ || now < next_stall_check_) return;
  next_stall_check_ = now + 1000;
  // The job's processes write these files: the folder and each file are opened without following
  // a link, and only small regular files are read.
  const int dir = ::open(StepBeaconDir(run_dir_).c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) return;
  DIR* listing = ::fdopendir(dir);
  if (listing == nullptr) {
    ::close(dir);
    return;
  }
  int files = 0;
  while (const dirent* entry = ::readdir(listing)) {
    const auto rank = RankOfStepBeacon(entry->d_name);
    if (!rank || ++files > 4096) continue;
    const int fd = ::openat(dir, entry->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    char text[kStepBeaconMaxBytes + 1];
    ssize_t n = -1;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        st.st_size <= static_cast<off_t>(kStepBeaconMaxBytes)) {
      n = ::pread(fd, text, kStepBeaconMaxBytes, 0);
    }
    ::close(fd);
    if (n <= 0) continue;
    if (auto beacon = ParseStepBeacon(std::string(text, static_cast<size_t>(n)))) {
      stall_watch_.Observe(*rank, *beacon, now);
    }
  }
  ::closedir(listing);
  auto verdict = stall_watch_.Check(now);
  if (!verdict) return;
  KillForWatchdog(StallWatch::Describe(*verdict, config_.node_name), /*permanent=*/false, now);
}

void JobRun::WatchMemory(Millis now) {
  if (!memory_sampler_ || spec_.resources.memory_per_rank <= 0 || kill_deadline_ ||
      now < next_memory_check_) {
    return;
  }
  next_memory_check_ = now + 250;
  auto over = OverMemory(memory_sampler_->Sample(now), spec_.resources.memory_per_rank,
                         config_.node_name);
  // Not retried: the same job on the same data needs the same memory the next time.
  if (over) KillForWatchdog(*over, /*permanent=*/true, now);
}

void JobRun::KillForWatchdog(const std::string& reason, bool permanent, Millis now) {
  watchdog_reason_ = reason;
  watchdog_permanent_ = permanent;
  Note(reason + "; stopping the attempt");
  Kill(reason, now);
  kill_deadline_ = now;  // SIGKILL at once: a hung rank saves nothing, nor does one over memory
}

}  // namespace kiln::agent
