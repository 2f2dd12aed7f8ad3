// The disk half of log delivery (the LogShipper is the memory half). Every line the agent ships
// is also appended to <run-dir>/log.spool, one per line in shipping order, so that line N of the
// file is line number N of the attempt on this node; each acknowledgement from the scheduler
// moves <run-dir>/log.acked (the first line not yet acknowledged). An agent that restarts (a
// crash, kill -9, an upgrade) reads back what was never acknowledged and ships it again, so a
// restart of the agent loses no output either, like a reconnect or a scheduler restart.
//
// Bounded: a spool stops growing at kMaxSpoolBytes per attempt (the lines after that are still
// shipped from memory, and output.log keeps them all), and Recover reads back at most the newest
// kMaxRecoverBytes of what is unacknowledged (the scheduler records the older ones as lost).
// Files are opened without following links: the run dir may belong to the job's account.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kiln::agent {

class LogSpool {
 public:
  static constexpr int64_t kMaxSpoolBytes = 64 << 20;
  static constexpr int64_t kMaxRecoverBytes = 8 << 20;

  explicit LogSpool(std::string work_dir) : work_dir_(std::move(work_dir)) {}
  ~LogSpool();
  LogSpool(const LogSpool&) = delete;
  LogSpool& operator=(const LogSpool&) = delete;

  // Appends the attempt's next lines. The first append of an attempt in this process starts a
  // new spool (a run dir may be left from an earlier cluster's job of the same id), unless
  // Recover found it. A write that fails (disk full) ends that attempt's spool: it is removed,
  // so that a restart never resends misnumbered lines.
  void Append(int64_t job_id, int64_t attempt, const std::vector<std::string>& lines);
  // The scheduler has stored every line of the attempt before `next_line`.
  void Acknowledged(int64_t job_id, int64_t attempt, int64_t next_line);
  // Closes the attempt's files (its lines are all acknowledged and no more will come).
  void Close(int64_t job_id, int64_t attempt);

  struct Unacknowledged {
    int64_t job_id = 0;
    int64_t attempt = 0;
    int64_t first_line = 0;  // the number of lines[0]
    std::vector<std::string> lines;
  };
  // What the run dirs under work_dir hold that the scheduler never acknowledged (at agent start).
  std::vector<Unacknowledged> Recover();

  std::string RunDir(int64_t job_id, int64_t attempt) const;

 private:
  struct File {
    int spool_fd = -1;
    int acked_fd = -1;
    int64_t lines = 0;
    int64_t bytes = 0;
    bool full = false;  // past kMaxSpoolBytes: no more appends
  };
  using Key = std::pair<int64_t, int64_t>;
  File* Open(const Key& key);
  void Abandon(const Key& key, File& file);

  std::string work_dir_;
  std::map<Key, File> files_;
};

}  // namespace kiln::agent
