// Pure pieces of security: the access rules, tokens, credentials files and key files.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/curve.h"
#include "scheduler/core/access_policy.h"

using namespace kiln;
using core::Caller;
using core::JobAction;

namespace {
std::string TempDir() {
  char pattern[] = "/tmp/kiln-sec-XXXXXX";
  return ::mkdtemp(pattern);
}
int ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}
}  // namespace

TEST_CASE("owners and admins may act on a job, other users are told who owns it") {
  const Caller alice{"alice", false}, bob{"bob", false}, root{"root", true};
  CHECK(core::MayActOnJob(alice, JobAction::kCancel, 7, "alice").ok());
  CHECK(core::MayActOnJob(root, JobAction::kCancel, 7, "alice").ok());
  Status refused = core::MayActOnJob(bob, JobAction::kLogs, 7, "alice");
  CHECK(refused.code() == StatusCode::kPermissionDenied);
  CHECK(refused.message() ==
        "user bob may not read the logs of job 7: it belongs to alice (only its owner or an "
        "admin may)");
  // Priorities: owners may lower, only admins may raise or touch others' jobs.
  CHECK(core::MayChangePriority(alice, 7, "alice", 5, 5).ok());
  CHECK(core::MayChangePriority(alice, 7, "alice", 5, -3).ok());
  CHECK_FALSE(core::MayChangePriority(alice, 7, "alice", 5, 6).ok());
  CHECK_FALSE(core::MayChangePriority(bob, 7, "alice", 5, 0).ok());
  CHECK(core::MayChangePriority(root, 7, "alice", 5, 100).ok());
  CHECK(core::MaySubmitAs(alice, "alice").ok());
  CHECK(core::MaySubmitAs(alice, "").ok());
  CHECK_FALSE(core::MaySubmitAs(alice, "bob").ok());
  CHECK(core::MaySubmitAs(root, "bob").ok());
  CHECK(core::MaySubmitWithPriority(alice, 0).ok());
  CHECK(core::MaySubmitWithPriority(alice, -5).ok());
  CHECK_FALSE(core::MaySubmitWithPriority(alice, 1).ok());
  CHECK(core::MaySubmitWithPriority(root, 100).ok());
  CHECK_FALSE(core::MayAdministerNodes(alice).ok());
  CHECK(core::MayAdministerNodes(root).ok());
  CHECK(core::KeyOfConnection(core::ConnectionIdOf("abc")) == "abc");
  CHECK(core::KeyOfConnection("").empty());
  // Seeing a job (its spec, paths, checkpoints) is its owner's, like touching it.
  CHECK(core::MayActOnJob(alice, JobAction::kShow, 7, "alice").ok());
  CHECK(core::MayActOnJob(bob, JobAction::kShow, 7, "alice").message() ==
        "user bob may not see job 7: it belongs to alice (only its owner or an admin may)");
}

TEST_CASE("an owner releases only the holds the owner set") {
  const Caller alice{"alice", false}, bob{"bob", false}, root{"root", true};
  CHECK(core::MayRelease(alice, 7, "alice", /*held_by_admin=*/false).ok());
  Status refused = core::MayRelease(alice, 7, "alice", /*held_by_admin=*/true);
  CHECK(refused.code() == StatusCode::kPermissionDenied);
  CHECK(refused.message() ==
        "job 7 was held by an admin; only an admin may release it (ask one, or cancel it)");
  CHECK(core::MayRelease(root, 7, "alice", true).ok());
  CHECK_FALSE(core::MayRelease(bob, 7, "alice", false).ok());
}

TEST_CASE("tokens are random, well-formed, and stored only as a digest") {
  const std::string a = NewAccessToken(), b = NewAccessToken();
  CHECK(a != b);
  CHECK(LooksLikeAccessToken(a));
  CHECK(a.size() == 69);
  CHECK_FALSE(LooksLikeAccessToken(a.substr(1)));
  CHECK_FALSE(LooksLikeAccessToken("kiln_" + std::string(64, 'G')));
  CHECK(AccessTokenDigest(a).size() == 64);
  CHECK(AccessTokenDigest(a) != AccessTokenDigest(b));
  CHECK(AccessTokenDigest(a).find(a.substr(5, 16)) == std::string::npos);
}

TEST_CASE("credentials files are written 0600 and refused when others may read them") {
  const std::string dir = TempDir();
  const std::string path = dir + "/sub/credentials.json";
  Credentials c{"tcp://127.0.0.1:1", "key", "alice", NewAccessToken()};
  REQUIRE(SaveCredentials(path, c).ok());
  CHECK(ModeOf(path) == 0600);
  CHECK(ModeOf(dir + "/sub") == 0700);
  auto loaded = LoadCredentials(path);
  REQUIRE(loaded.ok());
  CHECK(loaded->token == c.token);
  CHECK(loaded->user == "alice");
  ::chmod(path.c_str(), 0640);
  auto loose = LoadCredentials(path);
  CHECK(loose.status().code() == StatusCode::kPermissionDenied);
  CHECK(loose.status().message().find("chmod 600 " + path) != std::string::npos);
  CHECK(LoadCredentials(dir + "/none.json").status().code() == StatusCode::kNotFound);
  ::setenv(kCredentialsEnvVar, "/x/y.json", 1);
  CHECK(DefaultCredentialsPath() == "/x/y.json");
  ::unsetenv(kCredentialsEnvVar);
}

TEST_CASE("keypair files are created 0600, reloaded unchanged, and public keys resolve from a "
          "key, a public file or a keypair file") {
  const std::string dir = TempDir();
  bool created = false;
  auto made = transport::LoadOrCreateKeyPair(dir + "/k.key", &created);
  REQUIRE(made.ok());
  CHECK(created);
  CHECK(ModeOf(dir + "/k.key") == 0600);
  CHECK(transport::IsCurveKey(made->public_key));
  CHECK(transport::IsCurveKey(made->secret_key));
  auto again = transport::LoadOrCreateKeyPair(dir + "/k.key", &created);
  REQUIRE(again.ok());
  CHECK_FALSE(created);
  CHECK(again->secret_key == made->secret_key);

  CHECK(*transport::ResolvePublicKey(made->public_key) == made->public_key);
  CHECK(*transport::ResolvePublicKey(dir + "/k.key") == made->public_key);
  REQUIRE(WriteFileAtomic(dir + "/k.pub", made->public_key + "\n").ok());
  CHECK(*transport::ResolvePublicKey(dir + "/k.pub") == made->public_key);
  CHECK_FALSE(transport::ResolvePublicKey("not-a-key").ok());
  CHECK_FALSE(transport::IsCurveKey(std::string(40, '"')));

  ::chmod((dir + "/k.key").c_str(), 0644);
  CHECK(transport::LoadKeyPair(dir + "/k.key").status().code() == StatusCode::kPermissionDenied);
}

TEST_CASE("a server key value is a path or a key, never ambiguous: existing files win, values "
          "that start like a path are paths, anything else must be a key") {
  const std::string key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";  // Z85, ZeroMQ's test key
  REQUIRE(transport::IsCurveKey(key));

  // A 40-character path made only of Z85 characters decodes as a key; when the file exists it is
  // read, and when it does not the error says there is no such file.
  std::string dir = TempDir();  // /tmp/kiln-sec-XXXXXX: 20 characters
  dir += "/abcdefgh";           // 29
  REQUIRE(MakeDirs(dir).ok());
  const std::string path = dir + "/server.pub";  // 40
  REQUIRE(path.size() == 40);
  REQUIRE(transport::IsCurveKey(path));
  auto missing = transport::ResolvePublicKey(path);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(missing.status().message().find("no file at " + path) != std::string::npos);
  REQUIRE(WriteFileAtomic(path, key + "\n").ok());
  auto read = transport::ResolvePublicKey(path);
  REQUIRE(read.ok());
  CHECK(*read == key);

  // Relative paths: ./ and ../ are paths even when no file is there.
  CHECK(transport::ResolvePublicKey("./" + key.substr(2)).status().code() == StatusCode::kNotFound);
  CHECK(transport::ResolvePublicKey("../" + key.substr(3)).status().code() ==
        StatusCode::kNotFound);

  // ~/ is $HOME.
  const char* old_home = std::getenv("HOME");
  const std::string saved_home = old_home != nullptr ? old_home : "";
  ::setenv("HOME", dir.c_str(), 1);
  auto home = transport::ResolvePublicKey("~/server.pub");
  CHECK((home.ok() && *home == key));
  CHECK(transport::ResolvePublicKey("~/absent.pub").status().code() == StatusCode::kNotFound);
  ::setenv("HOME", saved_home.c_str(), 1);

  // A key resolves as itself, with surrounding whitespace trimmed.
  CHECK(*transport::ResolvePublicKey(" " + key + "\n") == key);
  // Neither a file nor a key: the error says both.
  auto neither = transport::ResolvePublicKey("abc");
  REQUIRE_FALSE(neither.ok());
  CHECK(neither.status().message().find("neither an existing file nor a CURVE public key") !=
        std::string::npos);
  CHECK_FALSE(transport::ResolvePublicKey("").ok());
  // A directory is not a key file.
  CHECK_FALSE(transport::ResolvePublicKey(dir).ok());
  // A file that holds something else says so.
  REQUIRE(WriteFileAtomic(dir + "/junk", "hello\n").ok());
  CHECK(transport::ResolvePublicKey(dir + "/junk").status().message().find("holds no CURVE") !=
        std::string::npos);
}

TEST_CASE("keys kiln makes never read as a path") {
  for (int i = 0; i < 2000; ++i) {
    auto pair = transport::NewCurveKeyPair();
    REQUIRE(pair.ok());
    REQUIRE_FALSE(transport::LooksLikePath(pair->public_key));
  }
  CHECK(transport::LooksLikePath("/x"));
  CHECK(transport::LooksLikePath("./x"));
  CHECK(transport::LooksLikePath("../x"));
  CHECK(transport::LooksLikePath("~/x"));
  CHECK_FALSE(transport::LooksLikePath(".x"));
  CHECK_FALSE(transport::LooksLikePath("x/y"));
}

TEST_CASE("the envelope carries a token only when set, bounded in size and type") {
  protocol::Envelope e = protocol::MakeEnvelope(protocol::QueueRequest{true}, "q");
  CHECK(protocol::EncodeEnvelope(e).find("auth") == std::string::npos);
  e.auth = "kiln_abc";
  auto decoded = protocol::DecodeEnvelope(protocol::EncodeEnvelope(e));
  REQUIRE(decoded.ok());
  CHECK(decoded->auth == "kiln_abc");
  e.auth = std::string(protocol::kMaxAuthBytes + 1, 'x');
  CHECK_FALSE(protocol::DecodeEnvelope(protocol::EncodeEnvelope(e)).ok());
  auto numeric = protocol::DecodeEnvelope(R"({"v":1,"type":"queue","id":"q","auth":5,"body":{}})");
  REQUIRE_FALSE(numeric.ok());
  CHECK(numeric.status().message().find("envelope.auth") != std::string::npos);
}

TEST_CASE("secrets compare equal only when equal, and one-line files are read trimmed") {
  CHECK(ConstantTimeEquals("abc", "abc"));
  CHECK_FALSE(ConstantTimeEquals("abc", "abd"));
  CHECK_FALSE(ConstantTimeEquals("abc", "abcd"));
  CHECK(TrimWhitespace("  key\r\n") == "key");
  CHECK(TrimWhitespace(" \n\t").empty());
  const unsigned char bytes[] = {0x00, 0xab, 0x7f};
  CHECK(HexOf(bytes, 3) == "00ab7f");
}
