// Security end to end: CURVE on the wire, worker admission, users who own their jobs, and the
// refusals each failure gets.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "common/transport/curve.h"
#include "tests/integration/local_cluster.h"

using kiln::testing::CommandResult;
using kiln::testing::Slurp;
using kiln::testing::Contains;
using kiln::testing::LocalCluster;
using kiln::testing::SyntheticSpec;
using kiln::testing::WaitFor;
using nlohmann::json;

namespace {

// A copy of `credentials` with one field changed.
std::string CredentialsWith(const std::string& credentials, const std::string& field,
                            const std::string& value, const std::string& path) {
  auto c = kiln::LoadCredentials(credentials);
  REQUIRE(c.ok());
  if (field == "token") c->token = value;
  if (field == "server_key") c->server_key = value;
  REQUIRE(kiln::SaveCredentials(path, *c).ok());
  return path;
}

json AuditRows(LocalCluster& cluster) {
  auto r = cluster.Admin({"audit", "--json", "--limit", "1000"});
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

bool HasAuditRow(const json& rows, const std::string& user, const std::string& action,
                 const std::string& outcome) {
  for (const auto& row : rows) {
    if (row["user"] == user && row["action"] == action && row["outcome"] == outcome) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a user may not act on another user's job, an admin may, and refusals are audited") {
  LocalCluster cluster;
  const std::string alice = cluster.AddUser("alice");
  const std::string bob = cluster.AddUser("bob");
  json spec = SyntheticSpec("alices", 1, 1, 64);
  auto submitted = cluster.KilnWith(alice, {"submit", cluster.WriteSpec(spec)});
  REQUIRE(submitted.exit_code == 0);
  const std::string id = submitted.out.substr(0, submitted.out.find('\n'));
  json job = cluster.WaitForJob(std::stoll(id), [](const json& j) {
    return j["state"] == "COMPLETED";
  }, 120);
  REQUIRE(job["state"] == "COMPLETED");
  CHECK(job["user"] == "alice");  // the token's user, not what the client claims

  // Anyone may see that it is there (like squeue), without its metrics or why it ended; only
  // the owner may see its spec, paths and checkpoints (show) or touch it.
  CommandResult r = cluster.KilnWith(bob, {"show", id});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "user bob may not see job " + id + ": it belongs to alice"));
  json listed = json::parse(cluster.KilnWith(bob, {"queue", "--all", "--json"}).out);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["user"] == "alice");
  CHECK_FALSE(listed[0].contains("metrics"));
  CHECK(listed[0]["reason"] == "");
  CHECK(json::parse(cluster.KilnWith(alice, {"queue", "--all", "--json"}).out)[0]
            .contains("metrics"));
  r = cluster.KilnWith(bob, {"logs", id});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "user bob may not read the logs of job " + id + ": it belongs to alice"));
  r = cluster.KilnWith(bob, {"ckpt", "ls", id});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "may not read the checkpoints of job " + id));
  r = cluster.KilnWith(bob, {"ckpt", "pull", id, "-o", cluster.dir() + "/stolen"});
  CHECK(r.exit_code == 4);
  CHECK_FALSE(std::filesystem::exists(cluster.dir() + "/stolen"));
  r = cluster.KilnWith(bob, {"ckpt", "rm", id, "--step", "4"});
  CHECK(r.exit_code == 4);
  r = cluster.KilnWith(bob, {"submit", cluster.WriteSpec(spec, "b.json"), "--resume-from", id});
  CHECK(r.exit_code == 4);
  json urgent = spec;
  urgent["priority"] = 5;
  r = cluster.KilnWith(bob, {"submit", cluster.WriteSpec(urgent, "u.json")});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "only an admin may submit above priority 0"));
  CHECK(cluster.KilnWith(alice, {"logs", id}).exit_code == 0);
  CHECK(cluster.KilnWith(alice, {"ckpt", "ls", id}).exit_code == 0);

  // A held job of alice's: bob may not release or cancel it, alice may only lower its priority,
  // the admin may do anything.
  auto held = cluster.KilnWith(alice, {"submit", "--hold", cluster.WriteSpec(spec, "h.json")});
  REQUIRE(held.exit_code == 0);
  const std::string hid = held.out.substr(0, held.out.find('\n'));
  r = cluster.KilnWith(bob, {"release", hid});
  CHECK(r.exit_code == 4);
  r = cluster.KilnWith(bob, {"cancel", hid});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "may not cancel job " + hid + ": it belongs to alice"));
  r = cluster.KilnWith(alice, {"priority", hid, "5"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "only an admin may raise a priority"));
  CHECK(cluster.KilnWith(alice, {"priority", hid, "--", "-1"}).exit_code == 0);
  CHECK(cluster.Kiln({"priority", hid, "10"}).exit_code == 0);
  r = cluster.KilnWith(bob, {"node", "drain", cluster.worker_name()});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "only an admin may"));
  CHECK(cluster.Kiln({"cancel", hid}).exit_code == 0);
  CHECK(cluster.Show(std::stoll(hid))["state"] == "CANCELLED");

  // Holds: alice releases her own; one an admin put on her job stays until an admin releases it.
  // (The node is drained meanwhile, so that released jobs stay PENDING.)
  REQUIRE(cluster.Kiln({"node", "drain", cluster.worker_name()}).exit_code == 0);
  auto second = cluster.KilnWith(alice, {"submit", "--hold", cluster.WriteSpec(spec, "h2.json")});
  REQUIRE(second.exit_code == 0);
  const std::string sid = second.out.substr(0, second.out.find('\n'));
  CHECK(cluster.KilnWith(alice, {"release", sid}).exit_code == 0);
  CHECK(cluster.KilnWith(alice, {"hold", sid}).exit_code == 0);
  CHECK(cluster.KilnWith(alice, {"release", sid}).exit_code == 0);
  auto third = cluster.KilnWith(alice, {"submit", cluster.WriteSpec(spec, "h3.json")});
  REQUIRE(third.exit_code == 0);
  const std::string tid = third.out.substr(0, third.out.find('\n'));
  REQUIRE(cluster.Kiln({"hold", tid}).exit_code == 0);
  r = cluster.KilnWith(alice, {"release", tid});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "job " + tid + " was held by an admin; only an admin may release it"));
  CHECK(cluster.Show(std::stoll(tid))["held"] == true);
  CHECK(cluster.Kiln({"release", tid}).exit_code == 0);
  CHECK(cluster.Show(std::stoll(tid))["held"] == false);
  CHECK(cluster.Kiln({"cancel", sid}).exit_code == 0);
  CHECK(cluster.Kiln({"cancel", tid}).exit_code == 0);
  CHECK(cluster.Kiln({"node", "resume", cluster.worker_name()}).exit_code == 0);

  json audit = AuditRows(cluster);
  CHECK(HasAuditRow(audit, "alice", "submit", "ok"));
  CHECK(HasAuditRow(audit, "bob", "cancel", "PERMISSION_DENIED"));
  CHECK(HasAuditRow(audit, "bob", "ckpt.pull", "PERMISSION_DENIED"));
  CHECK(HasAuditRow(audit, "bob", "node.drain", "PERMISSION_DENIED"));
  CHECK(HasAuditRow(audit, "alice", "priority", "PERMISSION_DENIED"));
  CHECK(HasAuditRow(audit, "admin", "cancel", "ok"));
  CHECK(HasAuditRow(audit, "bob", "show", "PERMISSION_DENIED"));
}

TEST_CASE("a wrong or replaced token, missing or loose credentials and a wrong server key are "
          "refused with clear messages") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  const std::string alice = cluster.AddUser("alice");
  const std::string dir = cluster.dir();

  CommandResult r = cluster.KilnWith(
      CredentialsWith(alice, "token", kiln::NewAccessToken(), dir + "/forged.json"), {"queue"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "the token is not valid on this scheduler"));

  r = cluster.KilnWith(dir + "/missing.json", {"queue"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "kiln login"));

  const std::string loose = CredentialsWith(alice, "token", "", dir + "/loose.json");
  ::chmod(loose.c_str(), 0644);
  r = cluster.KilnWith(loose, {"queue"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "chmod 600 " + loose));

  auto other = kiln::transport::NewCurveKeyPair();
  REQUIRE(other.ok());
  r = cluster.KilnWith(CredentialsWith(alice, "server_key", other->public_key, dir + "/mitm.json"),
                       {"queue"});
  CHECK(r.exit_code == 4);
  CHECK(Contains(r.err, "dropped the connection during the encryption handshake"));

  // A new token replaces the old one at once; a removed user is refused.
  CHECK(cluster.KilnWith(alice, {"whoami"}).exit_code == 0);
  const std::string old_token = kiln::LoadCredentials(alice)->token;
  REQUIRE(cluster.Admin({"user", "token", "alice", "--credentials", dir + "/alice2.json",
                         "--scheduler", cluster.endpoint()}).exit_code == 0);
  CHECK(cluster.KilnWith(alice, {"whoami"}).exit_code == 4);
  r = cluster.KilnWith(dir + "/alice2.json", {"whoami"});
  CHECK(r.exit_code == 0);
  CHECK(Contains(r.out, "alice"));
  REQUIRE(cluster.Admin({"user", "remove", "alice"}).exit_code == 0);
  CHECK(cluster.KilnWith(dir + "/alice2.json", {"whoami"}).exit_code == 4);

  // kiln login reads the token from a file or stdin, checks it, and saves it mode 0600.
  auto added = cluster.Admin({"user", "add", "carol"});
  REQUIRE(added.exit_code == 0);
  const size_t at = added.out.find("kiln_");
  REQUIRE(at != std::string::npos);
  const std::string token = added.out.substr(at, 69);
  REQUIRE(kiln::LooksLikeAccessToken(token));
  std::ofstream(dir + "/token.txt") << token << "\n";
  r = kiln::testing::RunCommand({kiln::testing::BinPath("kiln"), "--scheduler", cluster.endpoint(),
                                 "--credentials", dir + "/carol.json", "login", "--server-key",
                                 cluster.state_dir() + "/server.pub", "--token-file",
                                 dir + "/token.txt"});
  CHECK(r.exit_code == 0);
  CHECK(Contains(r.out, "as carol"));
  struct stat st {};
  REQUIRE(::stat((dir + "/carol.json").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(cluster.KilnWith(dir + "/carol.json", {"whoami"}).exit_code == 0);

  // Tokens never reach the scheduler's log or the audit table.
  const std::string log = Slurp(dir + "/scheduler.log");
  CHECK_FALSE(Contains(log, "kiln_"));
  CHECK_FALSE(Contains(AuditRows(cluster).dump(), "kiln_"));
  CHECK_FALSE(Contains(log, old_token));
}

TEST_CASE("a client that does not speak CURVE gets nothing from the scheduler") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  kiln::transport::Context context;
  kiln::transport::Socket plain(context, kiln::transport::SocketKind::kDealer);
  REQUIRE(plain.Connect(cluster.endpoint()).ok());
  REQUIRE(plain.Send(kiln::protocol::Encode(kiln::protocol::QueueRequest{true}, "q")).ok());
  kiln::transport::Poller poller;
  poller.AddSocket(plain);
  REQUIRE(poller.Wait(1500).ok());
  CHECK_FALSE(poller.Ready(0));
  CHECK(cluster.Kiln({"queue"}).exit_code == 0);  // and it still serves others
}

TEST_CASE("a client that claims what used to be a worker's routing id takes nothing over: the "
          "scheduler still reaches the real worker") {
  LocalCluster cluster;
  kiln::transport::Context context;
  kiln::transport::Socket impostor(context, kiln::transport::SocketKind::kDealer);
  REQUIRE(impostor.SetRoutingId("worker:" + cluster.worker_name()).ok());
  cluster.ConnectSecurely(impostor, /*as_worker=*/false);  // knows the server key, not admitted
  REQUIRE(impostor.Send(kiln::protocol::Encode(kiln::protocol::Heartbeat{cluster.worker_name(),
                                                                          {}})).ok());
  const int64_t id = cluster.Submit(SyntheticSpec("after-impostor", 1, 1, 64));
  CHECK(cluster.WaitForJob(id, [](const json& j) { return j["state"] == "COMPLETED"; }, 60)
            ["state"] == "COMPLETED");
  // The impostor got a refusal for its worker message, and never a launch.
  bool launched = false, refused = false;
  kiln::transport::Poller poller;
  poller.AddSocket(impostor);
  (void)poller.Wait(500);
  while (auto frames = impostor.Receive()) {
    auto e = kiln::protocol::DecodeEnvelope((*frames)[0]);
    if (!e.ok()) continue;
    launched = launched || e->type == kiln::protocol::LaunchJob::kType;
    refused = refused || e->type == kiln::protocol::ErrorReply::kType;
  }
  CHECK_FALSE(launched);
  CHECK(refused);
}

TEST_CASE("a worker that is not admitted is refused and logged until its key is allowed, and "
          "refused again once revoked") {
  LocalCluster cluster(2, 3.0, /*with_worker=*/false);
  const std::string key_file = cluster.dir() + "/own-worker.key";
  cluster.StartWorkerWith({"--key-file", key_file});
  REQUIRE(WaitFor([&] { return Contains(Slurp(cluster.dir() + "/scheduler.log"),
                                        "not admitted"); }, 20));
  CHECK(WaitFor([&] { return Contains(Slurp(cluster.dir() + "/worker.log"),
                                      "worker not admitted"); }, 10));
  auto nodes = json::parse(cluster.Kiln({"nodes", "--json"}).out);
  CHECK(nodes.empty());

  auto keys = kiln::transport::LoadKeyPair(key_file);
  REQUIRE(keys.ok());
  CHECK(Contains(Slurp(cluster.dir() + "/scheduler.log"), keys->public_key));
  // A key admitted as another node may not register as this one.
  REQUIRE(cluster.Admin({"worker", "allow", keys->public_key, "--name", "elsewhere"}).exit_code == 0);
  CHECK(WaitFor([&] { return Contains(Slurp(cluster.dir() + "/worker.log"),
                                      "was admitted as node elsewhere"); }, 15));
  REQUIRE(cluster.Admin({"worker", "allow", keys->public_key, "--name", cluster.worker_name()})
              .exit_code == 0);
  CHECK(Contains(cluster.Admin({"worker", "list"}).out, keys->public_key));
  auto node_state = [&] {
    auto view = json::parse(cluster.Kiln({"nodes", "--json"}).out, nullptr, false);
    return view.is_array() && !view.empty() ? view[0]["state"].get<std::string>() : "";
  };
  CHECK(WaitFor([&] { return node_state() == "UP"; }, 15));

  REQUIRE(cluster.Admin({"worker", "revoke", cluster.worker_name()}).exit_code == 0);
  CHECK(WaitFor([&] { return node_state() == "DOWN"; }, 15));
}

TEST_CASE("traffic captured on loopback does not show the job spec in clear text") {
  if (::access("/usr/bin/tcpdump", X_OK) != 0 && ::access("/usr/sbin/tcpdump", X_OK) != 0) {
    WARN("tcpdump is not installed (scripts/setup.sh installs it): capture test not run");
    return;
  }
  LocalCluster cluster;
  const std::string port = cluster.endpoint().substr(cluster.endpoint().rfind(':') + 1);
  const std::string pcap = cluster.dir() + "/lo.pcap";
  const std::string err = cluster.dir() + "/tcpdump.err";
  pid_t tcpdump = ::fork();
  if (tcpdump == 0) {
    (void)std::freopen(err.c_str(), "w", stderr);
    ::execlp("tcpdump", "tcpdump", "-i", "lo", "-U", "-s", "0", "-w", pcap.c_str(), "tcp", "port",
             port.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (!WaitFor([&] { return Contains(Slurp(err), "listening on"); }, 10)) {
    ::kill(tcpdump, SIGKILL);
    WARN("tcpdump could not capture on lo here: " + Slurp(err));
    return;
  }
  // A control: bytes sent in clear to the same port must show up in the capture.
  const std::string control = "cleartextcontrol99";
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::write(fd, control.data(), control.size()) == static_cast<ssize_t>(control.size()));
  ::close(fd);

  json spec = SyntheticSpec("specmarker42", 1, 1, 64);
  spec["data"]["seed"] = 4242424242;
  const int64_t id = cluster.Submit(spec);
  json job = cluster.WaitForJob(id, [](const json& j) { return j["state"] == "COMPLETED"; }, 120);
  CHECK(job["state"] == "COMPLETED");  // spec sent to the scheduler and on to the worker
  CHECK(cluster.Kiln({"show", std::to_string(id)}).exit_code == 0);
  ::usleep(300000);
  ::kill(tcpdump, SIGINT);
  int status = 0;
  ::waitpid(tcpdump, &status, 0);
  const std::string captured = Slurp(pcap);
  REQUIRE(Contains(captured, control));
  CHECK(captured.size() > 10000);
  CHECK_FALSE(Contains(captured, "specmarker42"));
  CHECK_FALSE(Contains(captured, "4242424242"));
  CHECK_FALSE(Contains(captured, "synthetic"));
  CHECK_FALSE(Contains(captured, "kiln_"));
}

TEST_CASE(
    "an admin's quota set with kiln-scheduler user set refuses a submit past it, and a "
    "bad value is refused naming the flag") {
  LocalCluster cluster(2, 30.0, /*with_worker=*/false);
  const std::string alice = cluster.AddUser("alice");
  auto bad = cluster.Admin({"user", "set", "alice", "--max-gpus", "lots"});
  CHECK(bad.exit_code != 0);
  CHECK(Contains(bad.err + bad.out,
                 "--max-gpus: must be a whole number, 0 or none (no limit), "
                 "got \"lots\""));
  auto set = cluster.Admin(
      {"user", "set", "alice", "--max-pending", "1", "--max-checkpoint-bytes", "1GiB"});
  REQUIRE(set.exit_code == 0);
  auto listed = cluster.Admin({"user", "list"});
  CHECK(Contains(listed.out, "1.0 GiB"));

  const std::string spec = cluster.WriteSpec(SyntheticSpec("waits", 1, 1, 64));
  CHECK(cluster.KilnWith(alice, {"submit", spec}).exit_code == 0);  // no worker: it stays PENDING
  CommandResult refused = cluster.KilnWith(alice, {"submit", spec});
  CHECK(refused.exit_code != 0);
  CHECK(Contains(refused.err, "Quota: user alice has 1 of 1 pending jobs allowed"));
  CHECK(HasAuditRow(AuditRows(cluster), "alice", "submit", "FAILED_PRECONDITION"));
  // Lifting it works at once, without a restart.
  REQUIRE(cluster.Admin({"user", "set", "alice", "--max-pending", "none"}).exit_code == 0);
  CHECK(cluster.KilnWith(alice, {"submit", spec}).exit_code == 0);
}
