// Store: the placements table, the durable half of PlacementTable (placements.h).
#include <string>

#include "scheduler/service/store.h"

namespace kiln::service {

Status Store::SavePlacement(const PlacementRow& row) {
  SqliteStatement s(db_,
                    "INSERT OR REPLACE INTO placements (job_id, attempt, node, state) "
                    "VALUES (?,?,?,?)",
                    cache_.get());
  s.Bind(1, row.job_id).Bind(2, row.attempt).Bind(3, row.node).Bind(4, row.state.dump());
  return s.Run();
}

Status Store::DeletePlacement(int64_t job_id, int64_t attempt, const std::string& node) {
  SqliteStatement s(db_, "DELETE FROM placements WHERE job_id=? AND attempt=? AND node=?",
                    cache_.get());
  s.Bind(1, job_id).Bind(2, attempt).Bind(3, node);
  return s.Run();
}

Status Store::DeletePlacementsOn(const std::string& node) {
  SqliteStatement s(db_, "DELETE FROM placements WHERE node=?", cache_.get());
  s.Bind(1, node);
  return s.Run();
}

Result<std::vector<PlacementRow>> Store::ListPlacements() {
  SqliteStatement s(db_, "SELECT job_id, attempt, node, state FROM placements "
                         "ORDER BY job_id, attempt, node");
  std::vector<PlacementRow> rows;
  Status status;
  while (s.Step(&status)) {
    nlohmann::json state = nlohmann::json::parse(s.Text(3), nullptr, false);
    if (!state.is_object()) state = nlohmann::json::object();
    rows.push_back({s.Int(0), s.Int(1), s.Text(2), std::move(state)});
  }
  if (!status.ok()) return status;
  return rows;
}

}  // namespace kiln::service
