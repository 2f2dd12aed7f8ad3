#include "tests/scheduler/service_harness.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/transport/curve.h"
#include "scheduler/service/store.h"

namespace kiln::testing {

using protocol::Envelope;

std::optional<transport::Frames> InMemoryTransport::Receive(std::string* connection) {
  if (wire_.to_scheduler.empty()) return std::nullopt;
  auto [frames, label] = std::move(wire_.to_scheduler.front());
  wire_.to_scheduler.pop_front();
  if (connection != nullptr) *connection = label;
  return frames;
}

Status InMemoryTransport::Send(const transport::Frames& frames, bool /*to_worker*/) {
  if (frames.size() < 2) return Status::InvalidArgument("a message needs a peer and an envelope");
  wire_.to_peer[frames[0]].emplace_back(frames.begin() + 1, frames.end());
  return Status::Ok();
}

namespace {

Received Decode(const transport::Frames& frames) {
  auto envelope = protocol::DecodeEnvelope(frames.at(0));
  if (!envelope.ok()) throw std::runtime_error("undecodable message: " + envelope.status().message());
  return {*envelope, transport::Frames(frames.begin() + 1, frames.end())};
}

}  // namespace

ServiceHarness::ServiceHarness(service::SchedulerOptions options)
    : options_(std::move(options)), clock_(1'790'000'000'000) {
  char pattern[] = "/tmp/kiln-harness-XXXXXX";
  const char* made = ::mkdtemp(pattern);
  if (made == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = made;
  options_.state_dir = dir_ + "/state";
  if (!MakeDirs(options_.state_dir).ok()) throw std::runtime_error("cannot make the state dir");
  alice_ = NewAccessToken();
  root_ = NewAccessToken();
  {
    auto store = service::Store::Open(options_.state_dir + "/kiln.db");
    if (!store.ok()) throw std::runtime_error(store.status().ToString());
    if (!(*store)->UpsertUser({"alice", false, AccessTokenDigest(alice_), 0}).ok() ||
        !(*store)->UpsertUser({"root", true, AccessTokenDigest(root_), 0, {}, {"", true}}).ok()) {
      throw std::runtime_error("cannot add the harness's users");
    }
  }
  Start();
  auto cluster = transport::LoadKeyPair(options_.state_dir + "/" + service::kWorkerClusterKeyFile);
  if (!cluster.ok()) throw std::runtime_error(cluster.status().ToString());
  cluster_key_ = cluster->public_key;
}

ServiceHarness::~ServiceHarness() {
  scheduler_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void ServiceHarness::Start() {
  auto created = service::SchedulerService::Create(
      options_, clock_, std::make_unique<InMemoryTransport>(wire_));
  if (!created.ok()) throw std::runtime_error("scheduler: " + created.status().ToString());
  scheduler_ = std::move(created).value();
}

void ServiceHarness::Turn(Millis ms) {
  clock_.Advance(ms);
  scheduler_->Turn(0);
}

void ServiceHarness::RunFor(Millis total_ms, Millis step_ms) {
  for (Millis passed = 0; passed < total_ms; passed += step_ms) Turn(step_ms);
}

void ServiceHarness::Restart() {
  scheduler_.reset();
  // What was on its way either side dies with the process's connections.
  wire_.to_scheduler.clear();
  wire_.to_peer.clear();
  Start();
}

Received ServiceHarness::Ask(const std::string& token, const Envelope& request) {
  const std::string peer = "client-" + request.id;
  Envelope e = request;
  e.auth = token;
  wire_.to_scheduler.push_back({{peer, protocol::EncodeEnvelope(e)}, "curve:client-key"});
  Turn(0);
  auto& replies = wire_.to_peer[peer];
  if (replies.empty()) throw std::runtime_error("no reply to " + request.type);
  Received reply = Decode(replies.front());
  wire_.to_peer.erase(peer);
  return reply;
}

nlohmann::json ServiceHarness::Show(int64_t job_id) {
  Received reply = Ask(root_, protocol::ShowRequest{job_id});
  if (reply.envelope.type != "data") throw std::runtime_error("show: " + reply.body().dump());
  return reply.body()["data"];
}

int64_t ServiceHarness::Submit(const nlohmann::json& spec) {
  Received reply = Ask(alice_, protocol::SubmitRequest{"submit-" + std::to_string(requests_ + 1),
                                                       spec, {}, {}, "", false});
  if (reply.envelope.type != "submit_reply") {
    throw std::runtime_error("submit: " + reply.body().dump());
  }
  return reply.body()["job_id"].get<int64_t>();
}

FakeWorker::FakeWorker(ServiceHarness& harness, std::string name, int64_t slots, int64_t gpus,
                       std::string address)
    : harness_(harness),
      name_(std::move(name)),
      peer_("worker-" + name_),
      slots_(slots),
      gpus_(gpus),
      address_(std::move(address)) {}

void FakeWorker::Send(const Envelope& envelope, transport::Frames binary) {
  transport::Frames frames{peer_, protocol::EncodeEnvelope(envelope)};
  for (auto& b : binary) frames.push_back(std::move(b));
  harness_.wire().to_scheduler.push_back({std::move(frames), harness_.WorkerConnection()});
}

void FakeWorker::Register() {
  protocol::RegisterWorker r{name_, slots_, int64_t{8} << 30, gpus_, NotEnded(), {}, address_, ""};
  r.agent_uid = 0;  // a root agent, as in the README's set-up
  r.agent_account = "root";
  // Like an agent that was asked before: every account exists, root is uid 0, the others 1000.
  r.accounts = std::vector<protocol::AccountUid>{{"alice", 1000}, {"root", 0}};
  if (!address_.empty()) r.launch_endpoint = "tcp://" + address_ + ":7071";
  started_ = true;
  Send(r);
}

std::vector<protocol::RunningAttempt> FakeWorker::NotEnded() const {
  std::vector<protocol::RunningAttempt> out = running_;
  for (const auto& [key, exited] : unacked_exits_) out.push_back({key.first, key.second});
  return out;
}

void FakeWorker::Heartbeat() {
  if (!started_) return;
  Send(protocol::Heartbeat{name_, NotEnded()});
  for (const auto& [key, exited] : unacked_exits_) Send(exited);
}

void FakeWorker::Poll() {
  auto& queue = harness_.wire().to_peer[peer_];
  std::deque<transport::Frames> arrived;
  arrived.swap(queue);
  bool asked_to_register = false;
  for (const auto& frames : arrived) {
    Received r = Decode(frames);
    const std::string& type = r.envelope.type;
    if (type == "reregister") {
      asked_to_register = true;
    } else if (type == "register_ack" || type == "check_accounts") {
      protocol::AccountReport report{name_, {}};
      for (const auto& a : r.body().value("accounts", nlohmann::json::array())) {
        const std::string account = a.get<std::string>();
        report.accounts.push_back({account, account == "root" ? 0 : 1000});
      }
      if (!report.accounts.empty()) Send(report);
      if (type == "check_accounts") continue;
      for (const auto& [key, exited] : unacked_exits_) Send(exited);
    } else if (type == "launch") {
      auto launch = protocol::DecodeBody<protocol::LaunchJob>(r.envelope);
      if (launch.ok()) launches_.push_back(*launch);
    } else if (type == "kill") {
      // A kill of an attempt that already ended (its exit not yet acknowledged) changes nothing.
      auto kill = protocol::DecodeBody<protocol::KillJob>(r.envelope);
      if (kill.ok() && std::find(running_.begin(), running_.end(),
                                 protocol::RunningAttempt{kill->job_id, kill->attempt}) !=
                           running_.end()) {
        kills_.push_back(*kill);
      }
    } else if (type == "exit_ack") {
      unacked_exits_.erase({r.body()["job_id"].get<int64_t>(), r.body()["attempt"].get<int64_t>()});
    } else if (type != "heartbeat" && type != "log_ack") {
      replies_.push_back(std::move(r));
    }
  }
  if (asked_to_register) Register();
}

std::optional<protocol::LaunchJob> FakeWorker::LaunchOf(int64_t job_id) const {
  std::optional<protocol::LaunchJob> found;
  for (const auto& l : launches_) {
    if (l.job_id == job_id) found = l;
  }
  return found;
}

std::vector<Received> FakeWorker::TakeReplies(const std::function<bool(const Received&)>& keep) {
  std::vector<Received> taken;
  std::vector<Received> rest;
  for (auto& r : replies_) (keep(r) ? taken : rest).push_back(std::move(r));
  replies_ = std::move(rest);
  return taken;
}

void FakeWorker::Start(int64_t job_id, int64_t attempt) {
  running_.push_back({job_id, attempt});
  Send(protocol::JobStarted{job_id, attempt, 4242});
  Heartbeat();
}

void FakeWorker::Exit(const protocol::JobExited& exited) {
  running_.erase(std::remove(running_.begin(), running_.end(),
                             protocol::RunningAttempt{exited.job_id, exited.attempt}),
                 running_.end());
  unacked_exits_[{exited.job_id, exited.attempt}] = exited;
  Send(exited);
}

std::optional<Received> FakeWorker::Upload(int64_t job_id, int64_t attempt, int64_t step,
                                           const std::string& bytes,
                                           std::optional<int64_t> stop_after) {
  const std::string sha = Sha256Hex(bytes);
  auto answers = [&](const Received& r) {
    const std::string& type = r.envelope.type;
    return type == "error" ||
           ((type == "ckpt_offset" || type == "ckpt_done") && r.body().value("sha256", "") == sha);
  };
  Send(protocol::CheckpointBegin{job_id, attempt, step, 0, nlohmann::json::object(),
                                 static_cast<int64_t>(bytes.size()), sha, std::nullopt});
  std::optional<Received> last;
  for (int round = 0; round < 256; ++round) {
    harness_.Turn(0);
    Poll();
    auto got = TakeReplies(answers);
    if (got.empty()) return last;
    last = std::move(got.back());
    if (last->envelope.type != "ckpt_offset") return last;
    const int64_t offset = last->body()["offset"].get<int64_t>();
    const int64_t end = std::min<int64_t>(stop_after.value_or(bytes.size()), bytes.size());
    if (offset >= end) return last;
    const int64_t length = std::min<int64_t>(end - offset, 1024);
    Send(protocol::CheckpointChunk{sha, offset}, {bytes.substr(offset, length)});
  }
  return last;
}

std::pair<bool, std::string> FakeWorker::Fetch(int64_t job_id, int64_t step, int64_t bytes) {
  Send(protocol::CheckpointRead{job_id, step, 0, bytes});
  harness_.Turn(0);
  Poll();
  auto got = TakeReplies([](const Received& r) {
    return r.envelope.type == "ckpt_data" || r.envelope.type == "error";
  });
  if (got.empty()) return {false, "no reply"};
  if (got.back().envelope.type == "ckpt_data" && !got.back().binary.empty()) {
    return {true, got.back().binary[0]};
  }
  return {false, got.back().body().value("message", "")};
}

nlohmann::json SmallSpec(const std::string& name, int64_t ranks) {
  return {{"name", name},
          {"resources", {{"ranks", ranks}}},
          {"model", {{"type", "mlp"}, {"hidden", {4}}}},
          {"data", {{"type", "synthetic"}, {"samples", 8}, {"features", 2}, {"classes", 2}}},
          {"train",
           {{"epochs", 1},
            {"batch_size", 4},
            {"loss", "cross_entropy"},
            {"optimizer", {{"type", "sgd"}, {"lr", 0.1}}}}}};
}

}  // namespace kiln::testing
