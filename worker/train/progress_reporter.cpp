#include "worker/train/progress_reporter.h"

#include <cstdlib>

#include "common/protocol/codec.h"

namespace kiln::train {

ProgressReporter::ProgressReporter(const std::string& address) {
  if (address.empty()) return;
  context_ = std::make_unique<transport::Context>();
  socket_ = std::make_unique<transport::Socket>(*context_, transport::SocketKind::kPush);
  socket_->SetLinger(5000);
  // The agent's report socket is a CURVE server whose key it passes in KILN_REPORT_KEY.
  const char* server_key = std::getenv("KILN_REPORT_KEY");
  if (server_key != nullptr && *server_key != '\0') {
    auto own = transport::NewCurveKeyPair();
    if (!own.ok() || !socket_->MakeCurveClient(server_key, *own).ok()) {
      socket_.reset();
      return;
    }
  }
  if (!socket_->Connect(address).ok()) socket_.reset();
}

ProgressReporter::~ProgressReporter() {
  socket_.reset();  // lingers, delivering what is queued
  context_.reset();
}

void ProgressReporter::Progress(const nlohmann::json& report) {
  if (socket_) (void)socket_->Send(protocol::Encode(protocol::TrainProgress{report}));
}

void ProgressReporter::Checkpoint(int64_t step, int64_t epoch, const nlohmann::json& metrics,
                                  const std::string& path, int64_t bytes,
                                  const std::string& sha256) {
  if (!socket_) return;
  protocol::TrainCheckpoint c{step, epoch, metrics, path, bytes, sha256};
  (void)socket_->Send(protocol::Encode(c));
}

}  // namespace kiln::train
