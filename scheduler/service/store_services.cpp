// Store: the `services` table, one row per deployed service (service_table.h owns the meaning).
#include <sqlite3.h>

#include "scheduler/service/sqlite_statement.h"
#include "scheduler/service/store.h"

namespace kiln::service {

Status Store::PutService(const std::string& name, const nlohmann::json& record) {
  SqliteStatement s(db_,
                    "INSERT INTO services (name, record) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET record=excluded.record");
  s.Bind(1, name).Bind(2, record.dump());
  return s.Run();
}

Status Store::DeleteService(const std::string& name) {
  SqliteStatement s(db_, "DELETE FROM services WHERE name=?");
  s.Bind(1, name);
  return s.Run();
}

Result<std::vector<nlohmann::json>> Store::ListServices() {
  SqliteStatement s(db_, "SELECT record FROM services ORDER BY name");
  auto rows = s.Rows<std::string>([](const SqliteStatement& row) { return row.Text(0); });
  if (!rows.ok()) return rows.status();
  std::vector<nlohmann::json> out;
  for (const auto& text : *rows) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status::Internal("a services row is not JSON");
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace kiln::service
