// A prepared SQLite statement with typed binds and column reads; finalized on destruction.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln::service {

class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, const char* sql);
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  const Status& prepare_status() const { return status_; }
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, const std::string& value);
  // Returns true when a row is available, false when done; errors land in *status.
  bool Step(Status* status);
  // Runs to completion, for statements without rows.
  Status Run();
  // Clears the result so the statement can be bound and run again.
  void Reset();

  int64_t Int(int column) const;
  std::string Text(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  Status status_;
};

}  // namespace kiln::service
