// CURVE keys as kiln stores them. A key is ZeroMQ's Z85 text form (40 characters, 32 bytes).
//
// Files:
//   keypair file  {"public_key": "...", "secret_key": "..."}, mode 0600; refused when group or
//                 others may read it (the fix is named in the error)
//   public file   the public key on one line (server.pub), safe to copy anywhere
#pragma once

#include <string>

#include "common/status.h"

namespace kiln::transport {

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// A fresh keypair from libsodium's random source (through zmq_curve_keypair), whose public key
// does not start with '/' or '.' (so it never LooksLikePath).
Result<CurveKeyPair> NewCurveKeyPair();
// True when `key` is 40 characters of Z85 that decode to 32 bytes.
bool IsCurveKey(const std::string& key);

// Loads the keypair at `path`, creating it (mode 0600, parent dirs as needed) when absent.
// `*created` tells which happened.
Result<CurveKeyPair> LoadOrCreateKeyPair(const std::string& path, bool* created = nullptr);
Result<CurveKeyPair> LoadKeyPair(const std::string& path);
// True when `value` must be read as a path: it starts with '/', '~', './' or '../'.
bool LooksLikePath(const std::string& value);

// `key_or_path` is a Z85 public key or the path of a public file or keypair file, resolved in this
// order so that no value is ambiguous: an existing file is read (a leading "~/" is $HOME); a value
// that LooksLikePath is a path even when no such file exists (NotFound); anything else must be a
// key. Keys kiln makes never start with '/' or '.', so each of them resolves as itself.
Result<std::string> ResolvePublicKey(const std::string& key_or_path);

}  // namespace kiln::transport
