// Removes the run dirs of attempts that ended long ago (<work-dir>/jobs/<job>/attempt-<n>), so a
// worker's disk does not fill with the output logs and local checkpoints of every job it ever
// ran. An attempt still running, still uploading or not yet acknowledged is never touched.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"

namespace kiln::agent {

struct RunDirInfo {
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::string path;
  Millis modified_ms = 0;  // wall clock: the newest change of the dir or its output log
};

// Pure: the run dirs to remove, those not in use and unchanged for longer than keep_ms
// (0: keep forever).
std::vector<std::string> RunDirsToRemove(const std::vector<RunDirInfo>& dirs,
                                         const std::set<std::pair<int64_t, int64_t>>& in_use,
                                         Millis now_wall_ms, Millis keep_ms);

// The run dirs under <work_dir>/jobs.
std::vector<RunDirInfo> ListRunDirs(const std::string& work_dir);
// Removes `paths`, then every job folder left empty; returns how many run dirs went.
int RemoveRunDirs(const std::vector<std::string>& paths);
// Sets the run dir's time to now: the attempt ended (its exit was acknowledged).
void MarkRunDirEnded(const std::string& work_dir, int64_t job_id, int64_t attempt);
// How often to look: a tenth of keep_ms, between 1 s and 10 minutes.
Millis JanitorInterval(Millis keep_ms);

}  // namespace kiln::agent
