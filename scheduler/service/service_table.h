// The scheduler's services (kiln deploy, docs/serving.md): what each owner asked for, written
// through to the `services` table in the turn's transaction and reloaded by Load() (at start,
// and after a message's writes were rolled back). The replicas themselves are jobs (their spec's
// `serve` names the service), owned by the JobTable like any job; which of them are ready is
// the one fact kept only in memory (ActiveJob::serve), re-learned from the next report.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "scheduler/core/service_rollout.h"
#include "scheduler/service/store.h"

namespace kiln::service {

struct ServiceRecord {
  std::string name;
  std::string user;  // the owner
  core::ModelRef model;
  int64_t replicas = 1;
  int64_t cpus_per_replica = 1;
  int64_t memory_per_replica = 0;  // bytes; 0: not accounted
  int64_t gpus_per_replica = 0;
  int64_t max_batch = 32;
  double max_delay_ms = 2;
  std::vector<std::string> grants;  // users the owner lets call it, sorted
  std::string state = "active";     // active | failed (its replicas kept failing)
  std::string reason;               // why failed
  int64_t failures = 0;             // replica jobs failed in a row with none ready since
  Millis created_at = 0;
  Millis updated_at = 0;
};

// Retries of a replica job in place; past them the service starts a new replica job.
constexpr int64_t kReplicaRetries = 2;

nlohmann::json ServiceToJson(const ServiceRecord& s);
// "JOB:STEP": a served checkpoint's version, as replicas and views name it.
std::string ModelVersion(const core::ModelRef& m);
// A replica's spec: the trained job's spec (its model and data) as one rank of
// cpus_per_replica slots that runs kiln-serve (`serve`); InvalidArgument when it does not parse.
Result<nlohmann::json> ReplicaSpecOf(const nlohmann::json& trained_spec, const ServiceRecord& s);
Result<ServiceRecord> ServiceFromJson(const nlohmann::json& j);

class ServiceTable {
 public:
  explicit ServiceTable(Store& store) : store_(store) {}
  Status Load();
  const ServiceRecord* Find(const std::string& name) const;
  Status Put(const ServiceRecord& service);  // the row and memory
  Status Remove(const std::string& name);
  const std::map<std::string, ServiceRecord>& all() const { return services_; }

 private:
  Store& store_;
  std::map<std::string, ServiceRecord> services_;
};

}  // namespace kiln::service
