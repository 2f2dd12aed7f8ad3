// Schema upgrades (store.h): columns added after the first schema, added to older databases.
#include "scheduler/service/sqlite_statement.h"
#include "scheduler/service/store.h"

namespace kiln::service {

namespace {

// Columns added after the first schema; Migrate() adds them to older databases.
struct AddedColumn {
  const char* table;
  const char* name;
  const char* definition;
};
constexpr AddedColumn kAddedColumns[] = {
    {"jobs", "user", "TEXT NOT NULL DEFAULT ''"},
    {"jobs", "priority", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "held", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "time_limit_ms", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "depends_on", "TEXT NOT NULL DEFAULT '[]'"},
    {"jobs", "allocation", "TEXT NOT NULL DEFAULT '[]'"},
    {"nodes", "labels", "TEXT NOT NULL DEFAULT '[]'"},
    {"nodes", "drained", "INTEGER NOT NULL DEFAULT 0"},
    {"nodes", "drain_reason", "TEXT NOT NULL DEFAULT ''"},
    {"jobs", "requeues", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "held_by_admin", "INTEGER NOT NULL DEFAULT 0"},
    {"users", "max_pending", "INTEGER NOT NULL DEFAULT 0"},
    {"users", "max_running_ranks", "INTEGER NOT NULL DEFAULT 0"},
    {"users", "max_gpus", "INTEGER NOT NULL DEFAULT 0"},
    {"users", "max_checkpoint_bytes", "INTEGER NOT NULL DEFAULT 0"},
    {"users", "unix_user", "TEXT NOT NULL DEFAULT ''"},
    {"users", "allow_root", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "array_job", "INTEGER NOT NULL DEFAULT 0"},
    {"jobs", "array_index", "INTEGER NOT NULL DEFAULT -1"},
    {"jobs", "array", "TEXT NOT NULL DEFAULT ''"},
};

}  // namespace

Status Store::Migrate() {
  for (const auto& c : kAddedColumns) {
    SqliteStatement exists(db_, "SELECT 1 FROM pragma_table_info(?) WHERE name=?");
    exists.Bind(1, std::string(c.table)).Bind(2, std::string(c.name));
    Status status;
    const bool present = exists.Step(&status);
    KILN_RETURN_IF_ERROR(status);
    if (!present) {
      KILN_RETURN_IF_ERROR(Exec(std::string("ALTER TABLE ") + c.table + " ADD COLUMN " + c.name +
                                " " + c.definition));
    }
  }
  return Status::Ok();
}

}  // namespace kiln::service
