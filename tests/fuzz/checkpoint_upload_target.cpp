// The checkpoint upload handlers (ckpt_begin / ckpt_chunk, and the reads and removals that race
// with them) driven by arbitrary bytes: a real SchedulerService in a scratch directory, fed
// messages from an admitted worker and an admin client through HandleMessage.
#include <unistd.h>

#include <cstdint>
#include <memory>

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/credentials.h"
#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "scheduler/core/access_policy.h"
#include "scheduler/service/scheduler_service.h"
#include "scheduler/service/store.h"
#include "tests/fuzz/fuzz_targets.h"

namespace kiln::fuzz {

namespace {

using nlohmann::json;

// Reads the fuzzer's bytes as a stream of small integers and strings; past the end, zeros.
class Bytes {
 public:
  explicit Bytes(const std::string& data) : data_(data) {}
  bool done() const { return at_ >= data_.size(); }
  uint8_t Byte() { return done() ? 0 : static_cast<uint8_t>(data_[at_++]); }
  int U16() { return Byte() | (Byte() << 8); }
  std::string Take(size_t n) {
    n = std::min(n, data_.size() - std::min(at_, data_.size()));
    std::string out = data_.substr(std::min(at_, data_.size()), n);
    at_ += n;
    return out;
  }

 private:
  const std::string& data_;
  size_t at_ = 0;
};

class Harness {
 public:
  Harness() {
    spdlog::set_level(spdlog::level::off);  // refusals are expected here by the thousand
    char pattern[] = "/dev/shm/kiln-fuzz-XXXXXX";
    char fallback[] = "/tmp/kiln-fuzz-XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    if (dir == nullptr) dir = ::mkdtemp(fallback);
    if (dir == nullptr) AbortWithMessage("no scratch directory for the fuzzer");
    const std::string state = std::string(dir) + "/state";
    token_ = NewAccessToken();
    {
      if (!MakeDirs(state).ok()) AbortWithMessage("cannot make " + state);
      auto store = service::Store::Open(state + "/kiln.db");
      if (!store.ok() || !(*store)->UpsertUser({"fuzz", true, AccessTokenDigest(token_), 0}).ok()) {
        AbortWithMessage("cannot prepare the fuzzer's user");
      }
    }
    service::SchedulerOptions options;
    options.listen = "inproc://kiln-fuzz-" + std::to_string(::getpid());
    options.state_dir = state;
    auto created = service::SchedulerService::Create(options, clock_, context_);
    if (!created.ok()) AbortWithMessage(created.status().ToString());
    service_ = std::move(created).value();
    auto cluster = transport::LoadKeyPair(state + "/" + service::kWorkerClusterKeyFile);
    if (!cluster.ok()) AbortWithMessage(cluster.status().ToString());
    worker_ = core::ConnectionIdOf(cluster->public_key);
    Worker(protocol::Encode(protocol::RegisterWorker{"w", 2, 1 << 30, 0, {}, {}, "", ""}));
    json spec = {{"name", "fuzz"},
                 {"resources", {{"ranks", 1}}},
                 {"model", {{"type", "mlp"}, {"hidden", {4}}}},
                 {"data", {{"type", "synthetic"}, {"samples", 8}, {"features", 2},
                           {"classes", 2}}},
                 {"train", {{"epochs", 1}, {"batch_size", 4}, {"loss", "cross_entropy"},
                            {"optimizer", {{"type", "sgd"}, {"lr", 0.1}}}}},
                 {"checkpoint", {{"keep_last", 2}}}};
    Client(protocol::SubmitRequest{"fuzz-job", spec, std::nullopt, std::nullopt, "", true});
    for (int i = 0; i < 3; ++i) contents_[i] = std::string(kSizes[i], static_cast<char>('a' + i));
    for (int i = 0; i < 3; ++i) shas_[i] = Sha256Hex(contents_[i]);
  }

  void Run(const std::string& data) {
    Bytes in(data);
    for (int op = 0; op < 64 && !in.done(); ++op) {
      const int k = in.Byte() % 3;
      switch (in.Byte() % 7) {
        case 0: {  // announce an upload, mostly truthful
          const int64_t job = 1 + in.Byte() % 2;
          const bool lie = in.Byte() % 4 == 0;
          const int64_t bytes = lie ? in.U16() : static_cast<int64_t>(contents_[k].size());
          const std::string sha = lie && in.Byte() % 2 ? Sha256Hex(in.Take(4)) : shas_[k];
          Worker(protocol::Encode(protocol::CheckpointBegin{
              job, 1, in.Byte(), 0, json{{"test_accuracy", in.Byte() / 255.0}}, bytes, sha,
              std::nullopt}));
          break;
        }
        case 1: {  // a chunk of the real content at some offset
          const int64_t offset = in.U16() % (contents_[k].size() + 16);
          const size_t length = static_cast<size_t>(in.Byte()) * 32;
          const std::string chunk =
              offset < static_cast<int64_t>(contents_[k].size())
                  ? contents_[k].substr(static_cast<size_t>(offset), length)
                  : std::string();
          Worker(protocol::Encode(protocol::CheckpointChunk{shas_[k], offset}, "", {chunk}));
          break;
        }
        case 2: {  // a chunk of the fuzzer's own bytes, or none at all
          const int64_t offset = in.U16();
          transport::Frames frames = protocol::Encode(protocol::CheckpointChunk{shas_[k], offset});
          if (in.Byte() % 2) frames.push_back(in.Take(in.Byte()));
          Worker(std::move(frames));
          break;
        }
        case 3: {  // any frames at all, from the worker
          transport::Frames frames{in.Take(in.U16() % 512)};
          if (in.Byte() % 2) frames.push_back(in.Take(in.Byte()));
          Worker(std::move(frames));
          break;
        }
        case 4:
          Client(protocol::CheckpointRead{1, in.Byte() % 2 ? -1 : in.Byte(), in.U16(), in.U16()});
          break;
        case 5:
          Client(protocol::CheckpointRemove{1, in.Byte()});
          break;
        default:
          Client(protocol::CheckpointsRequest{1});
          break;
      }
    }
  }

 private:
  static constexpr size_t kSizes[3] = {1, 100, 3000};

  void Worker(transport::Frames frames) {
    frames.insert(frames.begin(), "worker-peer");
    service_->HandleMessage(frames, worker_);
  }
  template <typename M>
  void Client(const M& message) {
    protocol::Envelope e = protocol::MakeEnvelope(message, "c");
    e.auth = token_;
    service_->HandleMessage({"client-peer", protocol::EncodeEnvelope(e)}, "curve:client");
  }

  SystemClock clock_;
  transport::Context context_;
  std::unique_ptr<service::SchedulerService> service_;
  std::string worker_;
  std::string token_;
  std::string contents_[3];
  std::string shas_[3];
};

}  // namespace

void CheckpointUpload(const std::string& bytes) {
  static Harness* harness = new Harness();  // one service per process, as in the daemon
  harness->Run(bytes);
}

}  // namespace kiln::fuzz
