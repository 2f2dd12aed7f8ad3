#include "common/credentials.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace kiln {

namespace {
constexpr const char* kTokenPrefix = "kiln_";
constexpr size_t kTokenBytes = 32;

std::string HomeDir() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return home;
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_dir != nullptr) {
    return pw->pw_dir;
  }
  return "/";
}
}  // namespace

std::string NewAccessToken() {
  unsigned char bytes[kTokenBytes];
  if (RAND_bytes(bytes, sizeof bytes) != 1) AbortWithMessage("no randomness for a token");
  return kTokenPrefix + HexOf(bytes, sizeof bytes);
}

bool LooksLikeAccessToken(const std::string& token) {
  const std::string prefix = kTokenPrefix;
  if (token.size() != prefix.size() + 2 * kTokenBytes || token.rfind(prefix, 0) != 0) return false;
  for (size_t i = prefix.size(); i < token.size(); ++i) {
    const char c = token[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string AccessTokenDigest(const std::string& token) { return Sha256Hex(token); }

std::string ServiceCallToken(const std::string& token_digest, const std::string& service) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const std::string message = "kiln service:" + service;
  HMAC(EVP_sha256(), token_digest.data(), static_cast<int>(token_digest.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
  static const char* kHex = "0123456789abcdef";
  std::string out = "kiln_svc_";
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

std::string DefaultCredentialsPath() {
  if (const char* env = std::getenv(kCredentialsEnvVar); env != nullptr && *env != '\0') return env;
  std::string config;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    config = xdg;
  } else {
    config = HomeDir() + "/.config";
  }
  return config + "/kiln/credentials.json";
}

Result<Credentials> LoadCredentials(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("no kiln credentials at " + path +
                            ": ask your admin for a token (kiln-scheduler user add NAME), then "
                            "run `kiln login --scheduler tcp://HOST:PORT --server-key KEY`");
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("credentials file " + path +
                                    " may be read by other users: run chmod 600 " + path);
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    return Status::InvalidArgument("credentials file " + path + " is not a JSON object");
  }
  Credentials c;
  for (auto [field, target] : {std::pair{"scheduler", &c.scheduler},
                               std::pair{"server_key", &c.server_key}, std::pair{"user", &c.user},
                               std::pair{"token", &c.token}}) {
    auto it = j.find(field);
    if (it == j.end() || !it->is_string()) {
      return Status::InvalidArgument("credentials file " + path + ": \"" + field +
                                     "\" is missing; run `kiln login` again");
    }
    *target = it->get<std::string>();
  }
  return c;
}

Status SaveCredentials(const std::string& path, const Credentials& c) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
    KILN_RETURN_IF_ERROR(MakeDirs(dir));
    ::chmod(dir.c_str(), 0700);  // only a folder made here: never loosen or tighten one that was
  }
  nlohmann::json j = {{"scheduler", c.scheduler}, {"server_key", c.server_key}, {"user", c.user},
                      {"token", c.token}};
  return WriteFileAtomic(path, j.dump(2) + "\n", 0600);
}

}  // namespace kiln
