// Defaults shared by every kiln process, and the environment variables that override them.
#pragma once

#include <string>

namespace kiln {

constexpr const char* kDefaultSchedulerAddress = "tcp://127.0.0.1:7070";
constexpr const char* kSchedulerEnvVar = "KILN_SCHEDULER";

// Protocol timing. A worker heartbeats every kHeartbeatIntervalMs; the scheduler declares a worker
// DOWN after the configured timeout (default kDefaultWorkerTimeoutMs) of silence; a worker that hears
// nothing from the scheduler for kWorkerReconnectAfterMs reconnects and registers again.
constexpr int kHeartbeatIntervalMs = 1000;
constexpr int kDefaultWorkerTimeoutMs = 5000;
// How long a worker cut off from the scheduler keeps running its attempts (docs/operations.md).
constexpr int kDefaultWorkerLeaseMs = 30000;
constexpr int kWorkerReconnectAfterMs = 3000;

// The address a client should use: the flag if given, else $KILN_SCHEDULER, else the default.
std::string ResolveSchedulerAddress(const std::string& flag_value);

}  // namespace kiln
