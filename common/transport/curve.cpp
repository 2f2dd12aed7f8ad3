#include "common/transport/curve.h"

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <zmq.h>

#include "common/file_util.h"

namespace kiln::transport {

Result<CurveKeyPair> NewCurveKeyPair() {
  char public_key[41];
  char secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status::Internal("cannot make a CURVE keypair: this libzmq was built without CURVE");
  }
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

Result<std::string> ResolvePublicKey(const std::string& key_or_path) {
  const std::string given = TrimWhitespace(key_or_path);
  if (IsCurveKey(given)) return given;
  std::error_code ec;
  if (!std::filesystem::exists(given, ec)) {
    return Status::InvalidArgument("\"" + given + "\" is neither a 40-character Z85 public key "
                                   "nor a file: give the scheduler's key (kiln-scheduler key "
                                   "show) or the path of its server.pub");
  }
  auto text = ReadFile(given);
  if (!text.ok()) return text.status();
  const std::string content = TrimWhitespace(*text);
  if (IsCurveKey(content)) return content;
  auto j = nlohmann::json::parse(content, nullptr, false);
  if (j.is_object() && j.contains("public_key") && j["public_key"].is_string() &&
      IsCurveKey(j["public_key"].get<std::string>())) {
    return j["public_key"].get<std::string>();
  }
  return Status::InvalidArgument("file " + given + " holds no CURVE public key");
}

}  // namespace kiln::transport
