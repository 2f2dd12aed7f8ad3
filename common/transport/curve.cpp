#include "common/transport/curve.h"

#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <zmq.h>

#include "common/file_util.h"

namespace kiln::transport {

bool LooksLikePath(const std::string& value) {
  return !value.empty() &&
         (value[0] == '/' || value[0] == '~' || value.rfind("./", 0) == 0 ||
          value.rfind("../", 0) == 0);
}

Result<CurveKeyPair> NewCurveKeyPair() {
  char public_key[41];
  char secret_key[41];
  // A public key that reads as a path ('/' or '.' first: 2 keys in 85) is drawn again, so that
  // every key kiln prints can be given anywhere a key or a path is accepted.
  do {
    if (zmq_curve_keypair(public_key, secret_key) != 0) {
      return Status::Internal("cannot make a CURVE keypair: this libzmq was built without CURVE");
    }
  } while (public_key[0] == '/' || public_key[0] == '.');
  return CurveKeyPair{public_key, secret_key};
}

bool IsCurveKey(const std::string& key) {
  if (key.size() != 40) return false;
  uint8_t bytes[32];
  return zmq_z85_decode(bytes, key.c_str()) != nullptr;
}

Result<CurveKeyPair> LoadKeyPair(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound("no key file at " + path);
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("key file " + path + " may be read by other users (mode " +
                                    std::to_string((st.st_mode >> 6) & 7) +
                                    std::to_string((st.st_mode >> 3) & 7) +
                                    std::to_string(st.st_mode & 7) + "): run chmod 600 " + path);
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("public_key") || !j.contains("secret_key") ||
      !j["public_key"].is_string() || !j["secret_key"].is_string()) {
    return Status::InvalidArgument("key file " + path +
                                   " is not a kiln keypair ({\"public_key\", \"secret_key\"})");
  }
  CurveKeyPair pair{j["public_key"].get<std::string>(), j["secret_key"].get<std::string>()};
  if (!IsCurveKey(pair.public_key) || !IsCurveKey(pair.secret_key)) {
    return Status::InvalidArgument("key file " + path + " holds a key that is not 40 Z85 characters");
  }
  return pair;
}

Result<CurveKeyPair> LoadOrCreateKeyPair(const std::string& path, bool* created) {
  if (created != nullptr) *created = false;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return LoadKeyPair(path);
  auto pair = NewCurveKeyPair();
  if (!pair.ok()) return pair.status();
  const std::string parent = std::filesystem::path(path).parent_path().string();
  if (!parent.empty()) KILN_RETURN_IF_ERROR(MakeDirs(parent));
  nlohmann::json j = {{"public_key", pair->public_key}, {"secret_key", pair->secret_key}};
  KILN_RETURN_IF_ERROR(WriteFileAtomic(path, j.dump(2) + "\n", 0600));
  if (created != nullptr) *created = true;
  return pair;
}

namespace {

std::string ExpandHome(const std::string& path) {
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') return std::string(home) + path.substr(1);
  }
  return path;
}

Result<std::string> PublicKeyFromFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  const std::string content = TrimWhitespace(*text);
  if (IsCurveKey(content)) return content;
  auto j = nlohmann::json::parse(content, nullptr, false);
  if (j.is_object() && j.contains("public_key") && j["public_key"].is_string() &&
      IsCurveKey(j["public_key"].get<std::string>())) {
    return j["public_key"].get<std::string>();
  }
  return Status::InvalidArgument("file " + path + " holds no CURVE public key (a server.pub, or a "
                                 "keypair file with \"public_key\")");
}

}  // namespace

Result<std::string> ResolvePublicKey(const std::string& key_or_path) {
  const std::string given = TrimWhitespace(key_or_path);
  if (given.empty()) {
    return Status::InvalidArgument("empty: give the scheduler's key (kiln-scheduler key show) or "
                                   "the path of its server.pub");
  }
  const std::string path = ExpandHome(given);
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return PublicKeyFromFile(path);
  if (std::filesystem::exists(path, ec)) {
    return Status::InvalidArgument(path + " is not a regular file: give the path of the "
                                   "scheduler's server.pub or its key");
  }
  if (LooksLikePath(given)) {
    return Status::NotFound("no file at " + path + " (a value that starts with /, ./, ../ or ~ "
                            "is a path): give the path of the scheduler's server.pub, or its key "
                            "(kiln-scheduler key show)");
  }
  if (IsCurveKey(given)) return given;
  return Status::InvalidArgument("\"" + given + "\" is neither an existing file nor a CURVE "
                                 "public key (40 Z85 characters): give the scheduler's key "
                                 "(kiln-scheduler key show) or the path of its server.pub");
}

}  // namespace kiln::transport
