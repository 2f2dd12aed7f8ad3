// Store: users, the worker key allow-list and the audit table.
#include <sqlite3.h>

#include "scheduler/service/store.h"

namespace kiln::service {

Status Store::UpsertUser(const UserRecord& u) {
  // A new token for an existing user keeps the user's account and quotas.
  SqliteStatement s(db_,
                    "INSERT INTO users (name, admin, token_sha256, created_at, unix_user, "
                    "allow_root) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET admin=excluded.admin, "
                    "token_sha256=excluded.token_sha256, created_at=excluded.created_at");
  s.Bind(1, u.name).Bind(2, int64_t{u.admin ? 1 : 0}).Bind(3, u.token_sha256).Bind(4, u.created_at);
  s.Bind(5, u.account.unix_user).Bind(6, int64_t{u.account.allow_root ? 1 : 0});
  return s.Run();
}

namespace {

#define KILN_USER_COLUMNS                                                             \
  "name, admin, token_sha256, created_at, max_pending, max_running_ranks, max_gpus, " \
  "max_checkpoint_bytes, unix_user, allow_root"

UserRecord UserOf(const SqliteStatement& row) {
  return UserRecord{row.Text(0),
                    row.Int(1) != 0,
                    row.Text(2),
                    row.Int(3),
                    UserQuota{row.Int(4), row.Int(5), row.Int(6), row.Int(7)},
                    UserAccount{row.Text(8), row.Int(9) != 0}};
}

}  // namespace

Result<std::optional<UserRecord>> Store::FindUserByTokenDigest(const std::string& token_sha256) {
  SqliteStatement s(db_, "SELECT " KILN_USER_COLUMNS " FROM users WHERE token_sha256=?",
                    cache_.get());
  s.Bind(1, token_sha256);
  Status status;
  if (s.Step(&status)) return std::optional<UserRecord>(UserOf(s));
  if (!status.ok()) return status;
  return std::optional<UserRecord>();
}

Result<std::vector<UserRecord>> Store::ListUsers() {
  SqliteStatement s(db_, "SELECT " KILN_USER_COLUMNS " FROM users ORDER BY name");
  return s.Rows<UserRecord>(UserOf);
}

Result<bool> Store::SetUserQuota(const std::string& name, const UserQuota& q) {
  SqliteStatement s(db_,
                    "UPDATE users SET max_pending=?, max_running_ranks=?, max_gpus=?, "
                    "max_checkpoint_bytes=? WHERE name=?");
  s.Bind(1, q.max_pending).Bind(2, q.max_running_ranks).Bind(3, q.max_gpus);
  s.Bind(4, q.max_checkpoint_bytes).Bind(5, name);
  KILN_RETURN_IF_ERROR(s.Run());
  return sqlite3_changes(db_) > 0;
}

Result<bool> Store::SetUserAccount(const std::string& name, const UserAccount& a) {
  SqliteStatement s(db_, "UPDATE users SET unix_user=?, allow_root=? WHERE name=?");
  s.Bind(1, a.unix_user).Bind(2, int64_t{a.allow_root ? 1 : 0}).Bind(3, name);
  KILN_RETURN_IF_ERROR(s.Run());
  return sqlite3_changes(db_) > 0;
}

Result<int64_t> Store::CheckpointBytesOfUser(const std::string& user) {
  SqliteStatement s(db_,
                    "SELECT COALESCE(SUM(c.bytes), 0) FROM checkpoints c "
                    "JOIN jobs j ON j.id = c.job_id WHERE j.user=?");
  s.Bind(1, user);
  Status status;
  if (s.Step(&status)) return s.Int(0);
  if (!status.ok()) return status;
  return int64_t{0};
}

Result<Store::StoredCheckpointBytes> Store::CheckpointBytesStored() {
  SqliteStatement s(db_,
                    "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT sha256, bytes "
                    "FROM checkpoints WHERE path='')), (SELECT COALESCE(SUM(bytes), 0) FROM "
                    "checkpoints WHERE path!='')",
                    cache_.get());
  Status status;
  if (s.Step(&status)) return StoredCheckpointBytes{s.Int(0), s.Int(1)};
  if (!status.ok()) return status;
  return StoredCheckpointBytes{};
}

Result<bool> Store::RemoveUser(const std::string& name) {
  SqliteStatement s(db_, "DELETE FROM users WHERE name=?");
  s.Bind(1, name);
  KILN_RETURN_IF_ERROR(s.Run());
  return sqlite3_changes(db_) > 0;
}

Status Store::AllowWorkerKey(const WorkerKeyRecord& k) {
  SqliteStatement s(db_, "INSERT INTO worker_keys (public_key, name, added_at) VALUES (?,?,?) "
                         "ON CONFLICT(public_key) DO UPDATE SET name=excluded.name");
  s.Bind(1, k.public_key).Bind(2, k.name).Bind(3, k.added_at);
  return s.Run();
}

Result<int64_t> Store::RevokeWorkerKey(const std::string& key_or_name, Millis now) {
  SqliteStatement remember(db_, "INSERT OR REPLACE INTO revoked_worker_keys "
                                "(public_key, name, revoked_at) SELECT public_key, name, ? "
                                "FROM worker_keys WHERE public_key=? OR name=?");
  remember.Bind(1, now).Bind(2, key_or_name).Bind(3, key_or_name);
  KILN_RETURN_IF_ERROR(remember.Run());
  SqliteStatement s(db_, "DELETE FROM worker_keys WHERE public_key=? OR name=?");
  s.Bind(1, key_or_name).Bind(2, key_or_name);
  KILN_RETURN_IF_ERROR(s.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<std::vector<WorkerKeyRecord>> Store::ListRevokedWorkerKeys() {
  SqliteStatement s(db_, "SELECT public_key, name, revoked_at FROM revoked_worker_keys "
                         "ORDER BY public_key");
  return s.Rows<WorkerKeyRecord>([](const SqliteStatement& row) {
    return WorkerKeyRecord{row.Text(0), row.Text(1), row.Int(2)};
  });
}

Status Store::ForgetRevokedWorkerKey(const std::string& public_key) {
  SqliteStatement s(db_, "DELETE FROM revoked_worker_keys WHERE public_key=?");
  s.Bind(1, public_key);
  return s.Run();
}

Result<std::vector<WorkerKeyRecord>> Store::ListWorkerKeys() {
  SqliteStatement s(db_, "SELECT public_key, name, added_at FROM worker_keys ORDER BY name",
                    cache_.get());
  return s.Rows<WorkerKeyRecord>([](const SqliteStatement& row) {
    return WorkerKeyRecord{row.Text(0), row.Text(1), row.Int(2)};
  });
}

Status Store::AddAudit(const AuditRecord& a) {
  SqliteStatement s(db_, "INSERT INTO audit (time, user, action, target, outcome, detail) "
                         "VALUES (?,?,?,?,?,?)", cache_.get());
  s.Bind(1, a.time).Bind(2, a.user).Bind(3, a.action).Bind(4, a.target).Bind(5, a.outcome);
  s.Bind(6, a.detail);
  return s.Run();
}

Result<int64_t> Store::ExternalChangeCounter() {
  SqliteStatement s(db_, "PRAGMA data_version", cache_.get());
  Status status;
  if (s.Step(&status)) return s.Int(0);
  if (!status.ok()) return status;
  return Status::Internal("PRAGMA data_version returned no row");
}

Result<std::vector<AuditRecord>> Store::ListAudit(int64_t limit) {
  SqliteStatement s(db_, "SELECT id, time, user, action, target, outcome, detail FROM "
                         "(SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id");
  s.Bind(1, limit);
  return s.Rows<AuditRecord>([](const SqliteStatement& row) {
    return AuditRecord{
        row.Int(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4), row.Text(5), row.Text(6)};
  });
}

}  // namespace kiln::service
