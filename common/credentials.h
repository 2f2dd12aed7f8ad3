// What a user's `kiln` needs to reach and prove itself to a scheduler, kept in one file that only
// the user may read: ${KILN_CREDENTIALS:-${XDG_CONFIG_HOME:-~/.config}/kiln/credentials.json},
// mode 0600, {"scheduler", "server_key", "user", "token"}.
//
// Tokens are 32 random bytes, "kiln_" + 64 hex digits. The scheduler stores only their SHA-256.
#pragma once

#include <string>

#include "common/status.h"

namespace kiln {

struct Credentials {
  std::string scheduler;   // tcp://HOST:PORT
  std::string server_key;  // the scheduler's CURVE public key (Z85)
  std::string user;
  std::string token;
};

constexpr const char* kCredentialsEnvVar = "KILN_CREDENTIALS";

std::string NewAccessToken();
bool LooksLikeAccessToken(const std::string& token);
// Hex SHA-256: what the scheduler keeps and looks tokens up by.
std::string AccessTokenDigest(const std::string& token);

// $KILN_CREDENTIALS, else the XDG config location above.
std::string DefaultCredentialsPath();
// Refuses a file that group or others may read, naming the chmod that fixes it.
Result<Credentials> LoadCredentials(const std::string& path);
// Writes atomically with mode 0600, creating the folder (mode 0700) if needed.
Status SaveCredentials(const std::string& path, const Credentials& credentials);

}  // namespace kiln
