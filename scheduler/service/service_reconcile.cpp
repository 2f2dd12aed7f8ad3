// Services' replicas (docs/serving.md): ReconcileServices keeps each service's replica jobs as its
// owner asked (scheduler/core/service_rollout.h decides), and what replicas report (readiness,
// endpoints) and may be sent (the tokens that may call them) is kept here.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

namespace {

// Replica jobs that FAILED in a row, none ready since: the service stops starting new ones.
constexpr int64_t kFailuresBeforeGivingUp = 3;
constexpr Millis kServiceCheckEveryMs = 1000;

}  // namespace

bool SchedulerService::ReplicaReady(int64_t job_id, const ActiveJob& job) const {
  if (job.state != core::JobState::kRunning) return false;
  auto it = serve_status_.find(job_id);
  return it != serve_status_.end() && it->second.attempt == job.attempt && it->second.ready;
}

std::vector<std::string> SchedulerService::ServeTokensOf(const ServiceRecord& s) {
  std::vector<std::string> out;
  for (const auto& [name, u] : users_) {
    if (name == s.user || std::count(s.grants.begin(), s.grants.end(), name) > 0) {
      out.push_back(Sha256Hex(ServiceCallToken(u.token_sha256, s.name)));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void SchedulerService::PushServeTokens() {
  std::map<std::string, std::vector<std::string>> by_service;
  for (const auto& [name, s] : services_.all()) by_service[name] = ServeTokensOf(s);
  jobs_.ForEach([&](int64_t id, const ActiveJob& job) {
    if (job.service.empty() || job.state != core::JobState::kRunning) return;
    auto tokens = by_service.find(job.service);
    if (tokens == by_service.end()) return;
    auto sent = serve_tokens_sent_.find(id);
    if (sent != serve_tokens_sent_.end() && sent->second.first == job.attempt &&
        sent->second.second == tokens->second) {
      return;
    }
    // Recorded only when sent: a node not up now gets them when it is (this runs every second).
    for (const auto& [node, share] : job.allocation) {
      auto w = workers_.find(node);
      if (w == workers_.end() || !w->second.up) return;
    }
    for (const auto& [node, share] : job.allocation) {
      Send(workers_.at(node).peer, protocol::ServeTokens{id, job.attempt, tokens->second});
    }
    serve_tokens_sent_[id] = {job.attempt, tokens->second};
  });
  for (auto it = serve_tokens_sent_.begin(); it != serve_tokens_sent_.end();) {
    it = jobs_.Find(it->first) == nullptr ? serve_tokens_sent_.erase(it) : std::next(it);
  }
}

void SchedulerService::NoteServeReport(ActiveJob& job, int64_t job_id, const json& report,
                                       const std::string& node_address) {
  if (job.service.empty() || !report.is_object()) return;
  // The replica runs as the service's owner, who could send anything on its report socket: only
  // typed fields are kept, and an endpoint only on the node's own address.
  json clean = json::object();
  for (const char* key : {"requests_per_s", "p50_ms", "p99_ms"}) {
    auto it = report.find(key);
    if (it != report.end() && it->is_number()) clean[key] = it->get<double>();
  }
  for (const char* key : {"requests", "errors", "batches", "batched_rows"}) {
    auto it = report.find(key);
    if (it != report.end() && it->is_number_integer()) clean[key] = it->get<int64_t>();
  }
  bool ready = false;
  if (auto e = report.find("endpoint"); e != report.end() && e->is_string()) {
    const std::string endpoint = e->get<std::string>();
    const std::string host =
        node_address.find(':') != std::string::npos ? "[" + node_address + "]" : node_address;
    // Exactly http(s)://ADDRESS:PORT: nothing after the port (a "@host" would send curl
    // elsewhere).
    const std::string http = "http://" + host + ":", https = "https://" + host + ":";
    const size_t prefix = endpoint.rfind(http, 0) == 0    ? http.size()
                          : endpoint.rfind(https, 0) == 0 ? https.size()
                                                          : std::string::npos;
    const std::string port = prefix == std::string::npos ? "" : endpoint.substr(prefix);
    const bool on_node = !port.empty() && port.size() <= 5 &&
                         port.find_first_not_of("0123456789") == std::string::npos &&
                         std::stoi(port) > 0 && std::stoi(port) <= 65535;
    if (on_node) {
      clean["endpoint"] = endpoint;
      auto r = report.find("ready");
      ready = r != report.end() && r->is_boolean() && r->get<bool>();
    }
  }
  ServeStatus& status = serve_status_[job_id];
  if (status.attempt != job.attempt || status.ready != ready) services_dirty_ = true;
  status.attempt = job.attempt;
  status.ready = ready;
  status.report = clean;
  const ServiceRecord* s = services_.Find(job.service);
  // Only a ready replica of the model the service wants shows that model works.
  if (ready && s != nullptr && s->failures > 0 && job.model == s->model) {
    ServiceRecord healthy = *s;
    healthy.failures = 0;
    if (Status put = services_.Put(healthy); !put.ok()) DieOnStoreError(put);
  }
}

void SchedulerService::NoteReplicaTransition(const JobRecord& job) {
  const json serve = job.spec.value("serve", json());
  if (!serve.is_object()) return;
  services_dirty_ = true;
  serve_status_.erase(job.id);
  if (job.state != core::JobState::kFailed) return;
  const ServiceRecord* s = services_.Find(serve.value("service", ""));
  if (s == nullptr) return;
  // Failures count against the model the service wants: during a rollout, the old replicas
  // being ready says nothing about the new checkpoint.
  const core::ModelRef model{serve.value("model_job", int64_t{0}),
                             serve.value("model_step", int64_t{-1})};
  if (model != s->model) return;
  ServiceRecord changed = *s;
  ++changed.failures;
  bool model_ready = false;
  jobs_.ForEach([&](int64_t id, const ActiveJob& a) {
    model_ready = model_ready ||
                  (a.service == changed.name && a.model == changed.model && ReplicaReady(id, a));
  });
  if (changed.failures >= kFailuresBeforeGivingUp && !model_ready && changed.state == "active") {
    changed.state = "failed";
    changed.reason = std::to_string(changed.failures) + " replicas of model " +
                     ModelVersion(changed.model) + " failed in a row (last: job " +
                     std::to_string(job.id) + ": " + job.reason +
                     "); replicas of an older model keep serving; deploy --update to try again";
    spdlog::warn("service {}: {}", changed.name, changed.reason);
  }
  changed.updated_at = clock_.WallMs();
  if (Status put = services_.Put(changed); !put.ok()) DieOnStoreError(put);
}

Status SchedulerService::StartReplica(const ServiceRecord& s) {
  auto source = store_->GetJob(s.model.job);
  if (!source.ok()) return source.status();
  if (!source->has_value()) return Status::NotFound("job " + std::to_string(s.model.job));
  auto spec = ReplicaSpecOf((*source)->spec, s);
  if (!spec.ok()) return spec.status();
  SpecParseResult parsed = ParseJobSpec(*spec);
  JobRecord job;
  job.request_id = "service-" + s.name + "-" + NewRequestId();
  job.user = s.user;
  job.name = s.name;
  job.spec = *spec;
  job.state = core::JobState::kPending;
  job.reason = "Waiting: not yet scheduled";
  job.ranks = 1;
  job.gpus_per_rank = s.gpus_per_replica;
  job.max_retries = kReplicaRetries;
  job.submitted_at = clock_.WallMs();
  job.resume_job = s.model.job;
  job.resume_step = s.model.step;
  auto id = store_->InsertJob(job);
  if (!id.ok()) return id.status();
  KILN_RETURN_IF_ERROR(store_->AddEvent(
      {*id, job.submitted_at, "", "PENDING",
       "replica of service " + s.name + " (model " + ModelVersion(s.model) + ")"}));
  job.id = *id;
  jobs_.Track(job, parsed.spec);
  dirty_ = true;
  spdlog::info("service {}: replica job {} for model {}", s.name, *id, ModelVersion(s.model));
  return Status::Ok();
}

void SchedulerService::StopReplica(int64_t job_id, const std::string& why) {
  auto found = store_->GetJob(job_id);
  if (!found.ok() || !found->has_value()) return;
  JobRecord job = **found;
  const bool running = job.state == core::JobState::kRunning;
  if (!Transition(job, core::JobEvent::kCancel, why).ok()) return;
  if (running) StopAttempt(job, why);
  dirty_ = true;
  spdlog::info("replica job {}: {}", job_id, why);
}

void SchedulerService::ReconcileServices() {
  const Millis now = clock_.MonotonicMs();
  if (now < services_settle_until_) return;
  if (!services_dirty_ && now < next_service_check_at_) return;
  // No service: nothing to check once a second (a scan of every job). Undeploy stops its
  // replicas itself; the first check after a start (dirty) finds any left over.
  if (!services_dirty_ && services_.all().empty()) return;
  services_dirty_ = false;
  next_service_check_at_ = now + kServiceCheckEveryMs;
  std::map<std::string, std::vector<core::ReplicaStatus>> live;
  std::vector<int64_t> orphans;
  std::vector<std::pair<int64_t, std::string>> lost;  // on a node that is DOWN
  std::set<int64_t> draining;                         // on a drained node
  jobs_.ForEach([&](int64_t id, const ActiveJob& job) {
    if (job.service.empty()) return;
    if (services_.Find(job.service) == nullptr) {
      orphans.push_back(id);
      return;
    }
    if (job.state == core::JobState::kRunning && !job.allocation.empty()) {
      // A training attempt on a silent node keeps its place until the node's lease ends (it
      // must never run twice); a replica holds no state, so a new one starts elsewhere now.
      // Only a node found silent (DOWN), not one that has yet to register after a restart.
      auto w = workers_.find(job.allocation.front().first);
      if (w == workers_.end() || w->second.record.state == "DOWN") {
        lost.push_back({id, job.allocation.front().first});
        return;
      }
    }
    // A pass has looked at it and found no room (not a hold, a quota or a dependency).
    const bool waiting =
        job.state == core::JobState::kPending && job.reason.rfind("Resources", 0) == 0;
    core::ModelRef model = job.model;
    bool drained = false;
    if (job.state == core::JobState::kRunning && !job.allocation.empty()) {
      // On a drained node: moved like a replica of an older model, a new one ready first.
      auto w = workers_.find(job.allocation.front().first);
      if (w != workers_.end() && w->second.record.drained) {
        model = {0, -1};
        drained = true;
        draining.insert(id);
      }
    }
    live[job.service].push_back({id, model, ReplicaReady(id, job), waiting, drained});
  });
  for (int64_t id : orphans) StopReplica(id, "its service no longer exists");
  for (const auto& [id, node] : lost) {
    StopReplica(id, "its node " + node + " is down; a new replica replaces it");
  }
  std::vector<ServiceRecord> services;
  for (const auto& [name, s] : services_.all()) services.push_back(s);
  for (const ServiceRecord& s : services) {
    const std::vector<core::ReplicaStatus>& replicas = live[s.name];
    core::RolloutPlan plan = core::PlanRollout(s.replicas, s.model, replicas);
    for (int64_t id : plan.stop) {
      StopReplica(id, "service " + s.name +
                          (draining.count(id) > 0 ? ": moved off its drained node"
                           : plan.rolling         ? ": rolled to model " + ModelVersion(s.model)
                                                  : ": scaled to " + std::to_string(s.replicas)));
    }
    if (s.state != "active") continue;  // a failed service starts nothing until updated
    for (int64_t i = 0; i < plan.start; ++i) {
      if (Status started = StartReplica(s); !started.ok()) {
        if (started.code() != StatusCode::kNotFound &&
            started.code() != StatusCode::kInvalidArgument) {
          spdlog::error("service {}: cannot start a replica now: {}", s.name, started.ToString());
          break;  // a store error: tried again at the next check
        }
        // Its trained job's row or spec is gone or broken: that does not get better by itself.
        ServiceRecord failed = s;
        failed.state = "failed";
        failed.reason = "cannot start a replica: " + started.message();
        failed.updated_at = clock_.WallMs();
        spdlog::error("service {}: {}", s.name, failed.reason);
        if (Status put = services_.Put(failed); !put.ok()) DieOnStoreError(put);
        break;
      }
    }
  }
  PushServeTokens();
  for (auto it = serve_status_.begin(); it != serve_status_.end();) {
    it = jobs_.Find(it->first) == nullptr ? serve_status_.erase(it) : std::next(it);
  }
}

void SchedulerService::ReconcileServicesNow() {
  // Not in the first seconds after a start: readiness is not known yet (ReconcileServices).
  services_dirty_ = true;
  ReconcileServices();
}

}  // namespace kiln::service
