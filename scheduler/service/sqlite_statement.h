// A prepared SQLite statement with typed binds and column reads; finalized on destruction.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln::service {

// Added to the message of an SQLite error that is SQLITE_FULL.
inline constexpr const char* kDiskFullHint = " (the disk that holds the scheduler's state is full)";

// Prepared statements kept for reuse, by SQL text (preparing costs more than running a small
// statement). Finalizes them on destruction, which must come before the database is closed.
class StatementCache {
 public:
  StatementCache() = default;
  ~StatementCache();
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

 private:
  friend class SqliteStatement;
  std::unordered_map<std::string, sqlite3_stmt*> idle_;
};

class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, const char* sql);
  // Borrows the statement from `cache` (preparing it the first time) and gives it back, reset,
  // on destruction.
  SqliteStatement(sqlite3* db, const char* sql, StatementCache* cache);
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  const Status& prepare_status() const { return status_; }
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, const std::string& value);
  SqliteStatement& Bind(int index, double value);
  // Returns true when a row is available, false when done; errors land in *status.
  bool Step(Status* status);
  // Runs to completion, for statements without rows.
  Status Run();
  // Clears the result so the statement can be bound and run again.
  void Reset();

  // Steps through every row, reading each with read(*this); the first error ends it.
  template <typename Row, typename Read>
  Result<std::vector<Row>> Rows(Read read) {
    std::vector<Row> rows;
    Status status;
    while (Step(&status)) rows.push_back(read(*this));
    if (!status.ok()) return status;
    return rows;
  }

  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  StatementCache* cache_ = nullptr;
  std::string sql_;
  Status status_;
};

}  // namespace kiln::service
