#include "scheduler/service/sqlite_statement.h"

#include <sqlite3.h>

namespace kiln::service {

SqliteStatement::SqliteStatement(sqlite3* db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
    status_ = Status::Internal(std::string("sqlite prepare failed: ") + sqlite3_errmsg(db) +
                               " in: " + sql);
  }
}

SqliteStatement::SqliteStatement(sqlite3* db, const char* sql, StatementCache* cache)
    : db_(db), cache_(cache), sql_(sql) {
  auto it = cache->idle_.find(sql_);
  if (it != cache->idle_.end()) {
    stmt_ = it->second;
    cache->idle_.erase(it);
    return;
  }
  if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
    status_ = Status::Internal(std::string("sqlite prepare failed: ") + sqlite3_errmsg(db) +
                               " in: " + sql);
  }
}

SqliteStatement::~SqliteStatement() {
  if (cache_ != nullptr && stmt_ != nullptr && status_.ok()) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    auto [it, inserted] = cache_->idle_.emplace(sql_, stmt_);
    if (inserted) return;
  }
  sqlite3_finalize(stmt_);
}

StatementCache::~StatementCache() {
  for (auto& [sql, stmt] : idle_) sqlite3_finalize(stmt);
}

SqliteStatement& SqliteStatement::Bind(int index, int64_t value) {
  if (stmt_ != nullptr) sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, const std::string& value) {
  if (stmt_ != nullptr) {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, double value) {
  if (stmt_ != nullptr) sqlite3_bind_double(stmt_, index, value);
  return *this;
}

double SqliteStatement::Double(int column) const { return sqlite3_column_double(stmt_, column); }

bool SqliteStatement::Step(Status* status) {
  if (!status_.ok()) {
    *status = status_;
    return false;
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) {
    *status = Status::IoError(std::string("sqlite step failed: ") + sqlite3_errmsg(db_) +
                              (rc == SQLITE_FULL ? kDiskFullHint : ""));
  }
  return false;
}

Status SqliteStatement::Run() {
  Status status;
  while (Step(&status)) {
  }
  return status;
}

void SqliteStatement::Reset() {
  if (stmt_ != nullptr) sqlite3_reset(stmt_);
}

int64_t SqliteStatement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string SqliteStatement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  int size = sqlite3_column_bytes(stmt_, column);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text), size);
}

}  // namespace kiln::service
