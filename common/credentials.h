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
// The token that calls a service's replicas (docs/serving.md): HMAC-SHA256 of the service's name
// keyed by the caller's token digest, as "kiln_svc_<64 hex>". The CLI derives it from the user's
// token and the scheduler from the stored digest; a replica (run as the service's owner) sees
// only this, which opens nothing but that service, never the user's kiln token.
std::string ServiceCallToken(const std::string& token_digest, const std::string& service);

// $KILN_CREDENTIALS, else the XDG config location above.
std::string DefaultCredentialsPath();
// Refuses a file that group or others may read, naming the chmod that fixes it.
Result<Credentials> LoadCredentials(const std::string& path);
// Writes atomically with mode 0600, creating the folder (mode 0700) if needed.
Status SaveCredentials(const std::string& path, const Credentials& credentials);

}  // namespace kiln
