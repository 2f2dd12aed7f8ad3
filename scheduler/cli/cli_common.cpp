#include "scheduler/cli/cli_common.h"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/config.h"
#include "common/credentials.h"
#include "common/transport/curve.h"

namespace kiln::cli {

int ReportError(const Status& status) {
  std::cerr << "kiln: " << status.message() << "\n";
  if (status.code() == StatusCode::kUnavailable) return kExitUnreachable;
  if (status.code() == StatusCode::kInvalidArgument) return kExitUsage;
  if (status.code() == StatusCode::kUnauthenticated ||
      status.code() == StatusCode::kPermissionDenied) {
    return kExitRefused;
  }
  return kExitFailed;
}

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string CredentialsPath(const GlobalOptions& g) {
  return g.credentials.empty() ? DefaultCredentialsPath() : g.credentials;
}

ClientSettings ResolveSettings(const GlobalOptions& g) {
  ClientSettings settings;
  settings.timeout_ms = static_cast<int>(g.timeout_s * 1000);
  auto credentials = LoadCredentials(CredentialsPath(g));
  if (!credentials.ok()) {
    settings.problem = Status::Unauthenticated(credentials.status().message());
  } else {
    settings.address = credentials->scheduler;
    settings.server_key = credentials->server_key;
    settings.token = credentials->token;
    settings.user = credentials->user;
  }
  const bool address_given = !g.scheduler.empty() || std::getenv(kSchedulerEnvVar) != nullptr;
  if (address_given || settings.address.empty()) {
    settings.address = ResolveSchedulerAddress(g.scheduler);
  }
  if (const char* key = std::getenv("KILN_SERVER_KEY"); key != nullptr && *key != '\0') {
    auto resolved = transport::ResolvePublicKey(key);
    if (!resolved.ok()) {
      settings.problem = Status::InvalidArgument("KILN_SERVER_KEY: " + resolved.status().message());
    } else {
      settings.server_key = *resolved;
    }
  }
  if (settings.problem.ok() && !transport::IsCurveKey(settings.server_key)) {
    settings.problem = Status::InvalidArgument(
        "credentials file " + CredentialsPath(g) + ": server_key is not a CURVE public key; run "
        "`kiln login` again");
  }
  return settings;
}

SchedulerClient MakeClient(const GlobalOptions& g) { return SchedulerClient(ResolveSettings(g)); }

}  // namespace kiln::cli
