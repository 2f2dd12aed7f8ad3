// Rank 0's channel to its worker agent: a PUSH socket to the run dir's ipc:// address, CURVE-
// encrypted to the key in $KILN_REPORT_KEY when the agent set one.
// Torch-free. Reports are best effort while training runs; on close it waits up to 5 s so the
// last checkpoint report reaches the agent before the process exits.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/transport/socket.h"

namespace kiln::train {

class ProgressReporter {
 public:
  // An empty address makes a reporter that drops everything (kiln-train run by hand).
  explicit ProgressReporter(const std::string& address);
  ~ProgressReporter();

  bool connected() const { return socket_ != nullptr; }
  void Progress(const nlohmann::json& report);
  void Checkpoint(int64_t step, int64_t epoch, const nlohmann::json& metrics,
                  const std::string& path, int64_t bytes, const std::string& sha256);

 private:
  std::unique_ptr<transport::Context> context_;
  std::unique_ptr<transport::Socket> socket_;
};

}  // namespace kiln::train
