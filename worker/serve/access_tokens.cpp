#include "worker/serve/access_tokens.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace kiln::serve {

using nlohmann::json;

Result<std::set<std::string>> ParseTokenFile(const std::string& text) {
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("tokens_sha256") ||
      !doc["tokens_sha256"].is_array()) {
    return Status::InvalidArgument("expected {\"tokens_sha256\": [...]}");
  }
  std::set<std::string> out;
  for (const json& h : doc["tokens_sha256"]) {
    if (!h.is_string() || h.get<std::string>().size() != 64) {
      return Status::InvalidArgument("tokens_sha256: each entry must be 64 hex digits");
    }
    out.insert(h.get<std::string>());
  }
  return out;
}

std::string TokenFileText(const std::set<std::string>& hashes) {
  return json{{"tokens_sha256", hashes}}.dump() + "\n";
}

Status AccessTokens::Load() {
  if (path_.empty()) return Status::Ok();
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return Status::NotFound(path_ + ": cannot read");
  auto text = ReadFile(path_);
  if (!text.ok()) return text.status();
  auto parsed = ParseTokenFile(*text);
  if (!parsed.ok()) return Status::InvalidArgument(path_ + ": " + parsed.status().message());
  std::lock_guard<std::mutex> lock(mu_);
  hashes_ = std::move(parsed).value();
  mtime_ = st.st_mtim;
  checked_at_ = std::time(nullptr);
  return Status::Ok();
}

void AccessTokens::ReloadIfChanged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::time_t now = std::time(nullptr);
    if (now == checked_at_) return;
    checked_at_ = now;
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return;
    if (st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec) return;
  }
  (void)Load();  // a file caught half-written keeps the previous set (the agent writes atomically)
}

Status AccessTokens::Check(const std::string& authorization_header) {
  if (path_.empty()) return Status::Ok();
  static const std::string kBearer = "Bearer ";
  if (authorization_header.empty()) {
    return Status::Unauthenticated("no token: send \"Authorization: Bearer <your kiln token>\"");
  }
  if (authorization_header.compare(0, kBearer.size(), kBearer) != 0) {
    return Status::Unauthenticated("the Authorization header must be \"Bearer <kiln token>\"");
  }
  const std::string hash = Sha256Hex(authorization_header.substr(kBearer.size()));
  ReloadIfChanged();
  std::lock_guard<std::mutex> lock(mu_);
  if (hashes_.count(hash) == 0) {
    return Status::PermissionDenied(
        "this token may not use the service: ask its owner for `kiln service grant NAME USER`");
  }
  return Status::Ok();
}

}  // namespace kiln::serve
