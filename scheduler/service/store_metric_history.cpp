// Store: each job's metrics history, the progress reports scheduler/core/metric_history.h keeps.
#include <sqlite3.h>

#include "scheduler/service/store.h"

namespace kiln::service {

using nlohmann::json;

Status Store::AddMetricPoint(int64_t job_id, const MetricPoint& p) {
  SqliteStatement s(db_,
                    "INSERT OR REPLACE INTO metric_history (job_id, series, ordinal, attempt, "
                    "time, point) VALUES (?,?,?,?,?,?)",
                    cache_.get());
  s.Bind(1, job_id).Bind(2, p.series).Bind(3, p.ordinal).Bind(4, p.attempt).Bind(5, p.time);
  s.Bind(6, p.point.dump(-1, ' ', false, json::error_handler_t::replace));
  return s.Run();
}

Result<int64_t> Store::ThinMetricHistory(int64_t job_id, const std::string& series,
                                         int64_t stride) {
  SqliteStatement thin(
      db_, "DELETE FROM metric_history WHERE job_id=? AND series=? AND ordinal % ? != 0",
      cache_.get());
  thin.Bind(1, job_id).Bind(2, series).Bind(3, stride);
  KILN_RETURN_IF_ERROR(thin.Run());
  SqliteStatement count(db_, "SELECT COUNT(*) FROM metric_history WHERE job_id=? AND series=?",
                        cache_.get());
  count.Bind(1, job_id).Bind(2, series);
  auto rows = count.Rows<int64_t>([](const SqliteStatement& row) { return row.Int(0); });
  if (!rows.ok()) return rows.status();
  return rows->empty() ? 0 : rows->front();
}

Result<std::vector<int64_t>> Store::MetricOrdinals(int64_t job_id, const std::string& series) {
  SqliteStatement s(db_, "SELECT ordinal FROM metric_history WHERE job_id=? AND series=?",
                    cache_.get());
  s.Bind(1, job_id).Bind(2, series);
  return s.Rows<int64_t>([](const SqliteStatement& row) { return row.Int(0); });
}

Result<std::vector<MetricPoint>> Store::MetricHistory(int64_t job_id) {
  SqliteStatement s(db_,
                    "SELECT series, ordinal, attempt, time, point FROM metric_history "
                    "WHERE job_id=? ORDER BY series, ordinal",
                    cache_.get());
  s.Bind(1, job_id);
  return s.Rows<MetricPoint>([](const SqliteStatement& row) {
    json point = json::parse(row.Text(4), nullptr, false);
    return MetricPoint{row.Text(0), row.Int(1), row.Int(2), row.Int(3),
                       point.is_discarded() ? json::object() : point};
  });
}

}  // namespace kiln::service
