// What the scheduler daemon is started with (flags and the config file), and the key files of its
// state dir.
#pragma once

#include <map>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "common/transport/curve.h"
#include "scheduler/core/fair_share.h"
#include "scheduler/core/record_retention.h"

namespace kiln::service {

struct SchedulerOptions {
  std::string listen = "tcp://127.0.0.1:7070";
  std::string state_dir;
  Millis worker_timeout_ms = 5000;
  // A DOWN worker's attempts keep their places until its lease ends (its agent stops them itself
  // by then); only then are they failed and placed elsewhere.
  Millis worker_lease_ms = 30000;
  // Scheduling policy (see docs/operations.md).
  bool backfill = true;
  double fair_share_half_life_s = 7 * 86400.0;
  core::UsageUnit usage_unit = core::UsageUnit::kRankSeconds;
  std::map<std::string, double> user_weights;  // default 1
  // Gangs may span several workers (launched through kiln-rsh); off, every gang is placed on
  // one node and jobs that ask for several wait as Infeasible.
  bool multi_node = true;
  // `kiln queue` lists only the caller's own jobs to non-admins (like Slurm's PrivateData=jobs).
  bool private_jobs = false;
  // How long logs, events, audit rows and abandoned uploads are kept (docs/operations.md).
  core::RecordRetention retention;
};

// Files of the state dir that hold keys (see docs/security.md).
constexpr const char* kServerKeyFile = "server.key";        // the scheduler's keypair, 0600
constexpr const char* kServerPublicKeyFile = "server.pub";  // its public key, for clients
constexpr const char* kWorkerClusterKeyFile = "worker-cluster.key";  // a keypair any worker may use

// Creates the scheduler's keypair and the worker cluster keypair in state_dir if absent (and
// server.pub beside them); returns the scheduler's keypair.
Result<transport::CurveKeyPair> EnsureSchedulerKeys(const std::string& state_dir);

}  // namespace kiln::service
