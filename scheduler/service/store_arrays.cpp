// Array task rows (store.h): found by (array_job, array_index) through the partial index
// jobs_by_array (each query repeats its condition, array_job > 0, so that SQLite uses it).
#include "scheduler/service/sqlite_statement.h"
#include "scheduler/service/store.h"

namespace kiln::service {

Result<std::optional<int64_t>> Store::FindArrayTask(int64_t array_job, int64_t index) {
  SqliteStatement s(db_,
                    "SELECT id FROM jobs WHERE array_job=? AND array_job > 0 AND array_index=? "
                    "ORDER BY id",
                    cache_.get());
  s.Bind(1, array_job).Bind(2, index);
  Status status;
  if (s.Step(&status)) return std::optional<int64_t>(s.Int(0));
  if (!status.ok()) return status;
  return std::optional<int64_t>();
}

Result<std::map<std::string, int64_t>> Store::ArrayTaskStates(int64_t array_job) {
  SqliteStatement s(db_,
                    "SELECT state, count(*) FROM jobs WHERE array_job=? AND array_job > 0 "
                    "GROUP BY state",
                    cache_.get());
  s.Bind(1, array_job);
  std::map<std::string, int64_t> out;
  Status status;
  while (s.Step(&status)) out[s.Text(0)] = s.Int(1);
  if (!status.ok()) return status;
  return out;
}

}  // namespace kiln::service
