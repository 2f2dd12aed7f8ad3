// Job arrays (kiln submit SPEC --array 0-999[:STEP][%MAX]): the task indices, the text users
// write them in, what each task's spec becomes, and how finished tasks roll up into the array's
// own state. Pure: no I/O, no clock. Used by the scheduler (which keeps the pending indices of an
// array in one row, not a row per task) and by the CLI (which folds and expands them).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

// The most tasks one array may have, and the largest index (as Slurm's MaxArraySize bounds both).
constexpr int64_t kMaxArrayTasks = 100000;
constexpr int64_t kMaxArrayIndex = 9999999;
// The most ranges (runs) the indices may take, merged: the array's row holds them as text and is
// written again as each task starts.
constexpr size_t kMaxArrayRuns = 100;

// first, first+step, ..., last (last - first is a multiple of step; step >= 1).
struct IndexRun {
  int64_t first = 0;
  int64_t last = 0;
  int64_t step = 1;
  int64_t Count() const { return (last - first) / step + 1; }
  bool operator==(const IndexRun& o) const {
    return first == o.first && last == o.last && step == o.step;
  }
};

// A set of task indices as increasing, non-overlapping runs: 10,000 consecutive indices take one.
class IndexSet {
 public:
  IndexSet() = default;
  // "0-999", "0-999:4", "1,3,8-12", in any order, overlaps merged. Errors name what is wrong
  // without a field (the caller adds it).
  static Result<IndexSet> Parse(const std::string& text);
  // Canonical text: runs joined by ',' ("0-996:4,1000"); "" when empty.
  std::string ToString() const;

  bool empty() const { return runs_.empty(); }
  int64_t Count() const;
  bool Contains(int64_t index) const;
  std::optional<int64_t> First() const;
  // Removes and returns the lowest index; the set must not be empty.
  int64_t TakeFirst();
  // Removes `index`; false when it was not in the set.
  bool Remove(int64_t index);
  // Every index in increasing order (for --expand; at most kMaxArrayTasks).
  std::vector<int64_t> Expand() const;
  const std::vector<IndexRun>& runs() const { return runs_; }
  bool operator==(const IndexSet& o) const { return runs_ == o.runs_; }

 private:
  std::vector<IndexRun> runs_;
};

// What --array says: the indices and how many tasks may run at once (0: no limit).
struct ArraySpec {
  IndexSet indices;
  int64_t max_running = 0;
};
// "INDICES[%MAX]". Errors start with "array: " and say what is allowed.
Result<ArraySpec> ParseArraySpec(const std::string& text);

// A task's spec: every string in `spec` outside the fields the scheduler reads (resources,
// depends_on, priority, max_retries, time_limit) with each "${array_index}" replaced
// by the index; a string that is exactly "${array_index}" becomes the number itself (so a seed
// or any integer field can follow the index).
nlohmann::json SubstituteArrayIndex(const nlohmann::json& spec, int64_t index);

// How an array's tasks ended, and the array's state once none is left to run.
struct ArrayTally {
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;  // tasks cancelled, and pending indices dropped by a cancel
};
// FAILED if any task failed, else CANCELLED if any was cancelled, else COMPLETED: an array that
// others depend on has succeeded only if every task did.
const char* ArrayFinalState(const ArrayTally& tally);
std::string DescribeTally(const ArrayTally& tally);

// "12_40", or "12" for index < 0.
std::string TaskName(int64_t array_job, int64_t index);
// A job reference as users type it: "12" or "12_40" (the task with index 40 of array 12).
struct JobRef {
  int64_t id = 0;
  std::optional<int64_t> index;
};
std::optional<JobRef> ParseJobRef(const std::string& text);

}  // namespace kiln
