// Who may call a replica: the SHA-256 of each kiln token allowed (the service's owner and the
// users the owner granted), from a file the worker agent writes into the run dir and rewrites
// when grants change. A request's "Authorization: Bearer TOKEN" is hashed and looked up.
#pragma once

#include <ctime>
#include <mutex>
#include <set>
#include <string>

#include "common/status.h"

namespace kiln::serve {

// The file's text: {"tokens_sha256": ["<64 hex>", ...]}.
Result<std::set<std::string>> ParseTokenFile(const std::string& text);
std::string TokenFileText(const std::set<std::string>& hashes);

class AccessTokens {
 public:
  // `path` empty: every request is allowed (kiln-serve run by hand with --no-auth).
  explicit AccessTokens(std::string path) : path_(std::move(path)) {}
  // Loads the file now; an error names it.
  Status Load();
  // OK, or Unauthenticated with what is wrong. Re-reads the file when it changed (checked at
  // most once a second), so a grant or a rotated token takes effect without a restart.
  Status Check(const std::string& authorization_header);

 private:
  void ReloadIfChanged();
  std::string path_;
  std::mutex mu_;
  std::set<std::string> hashes_;
  std::time_t checked_at_ = 0;
  std::timespec mtime_{};
};

}  // namespace kiln::serve
