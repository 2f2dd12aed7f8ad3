// Services (docs/serving.md): deploy, undeploy, list and grant, and the reconciliation that
// keeps each service's replicas (jobs whose spec has `serve`) as its owner asked: replaced when
// they end, rolled one at a time to a new checkpoint (scheduler/core/service_rollout.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/credentials.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/quantities.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

namespace {

constexpr int64_t kMaxReplicas = 64;
constexpr int64_t kReplicaRetries = 2;
// Replica jobs that FAILED in a row, none ready since: the service stops starting new ones.
constexpr int64_t kFailuresBeforeGivingUp = 3;
constexpr Millis kServiceCheckEveryMs = 1000;

std::string Version(const core::ModelRef& m) {
  return std::to_string(m.job) + ":" + std::to_string(m.step);
}

// A replica's spec: the trained job's model and data, as one rank that runs kiln-serve.
Result<json> ReplicaSpec(const json& source, const ServiceRecord& s) {
  if (!source.is_object()) return Status::Internal("the trained job's spec is not an object");
  json spec = source;
  spec["name"] = s.name;
  json resources = {{"ranks", 1},
                    {"cpus_per_rank", s.cpus_per_replica},
                    {"threads_per_rank", s.cpus_per_replica},
                    {"gpus_per_rank", s.gpus_per_replica}};
  if (s.memory_per_replica > 0) resources["memory_per_rank"] = s.memory_per_replica;
  spec["resources"] = resources;
  for (const char* key : {"checkpoint", "depends_on", "time_limit", "priority"}) spec.erase(key);
  spec["max_retries"] = kReplicaRetries;
  spec["serve"] = {{"service", s.name},
                   {"model_job", s.model.job},
                   {"model_step", s.model.step},
                   {"max_batch", s.max_batch},
                   {"max_delay_ms", s.max_delay_ms}};
  SpecParseResult parsed = ParseJobSpec(spec);
  if (!parsed.ok()) {
    return Status::InvalidArgument("the replica's spec is not valid: " +
                                   SpecErrorStrings(parsed.errors).front());
  }
  return spec;
}

double Number(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

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

void SchedulerService::NoteReplicaEnded(const JobRecord& job) {
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
                     Version(changed.model) + " failed in a row (last: job " +
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
  auto spec = ReplicaSpec((*source)->spec, s);
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
  KILN_RETURN_IF_ERROR(
      store_->AddEvent({*id, job.submitted_at, "", "PENDING",
                        "replica of service " + s.name + " (model " + Version(s.model) + ")"}));
  job.id = *id;
  jobs_.Track(job, parsed.spec);
  dirty_ = true;
  spdlog::info("service {}: replica job {} for model {}", s.name, *id, Version(s.model));
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
                           : plan.rolling         ? ": rolled to model " + Version(s.model)
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

json SchedulerService::ServiceView(const ServiceRecord& s, bool with_spec) {
  json view = ServiceToJson(s);
  if (with_spec) {
    // What a client needs to read input files as the model does (kiln predict --service): the
    // replicas' spec, which holds the trained job's model and data sections.
    auto source = store_->GetJob(s.model.job);
    if (source.ok() && source->has_value()) {
      auto spec = ReplicaSpec((*source)->spec, s);
      if (spec.ok()) view["spec"] = *spec;
    }
  }
  view.erase("failures");
  view["model"] = {{"job", s.model.job}, {"step", s.model.step}};
  view["version"] = Version(s.model);
  json replicas = json::array();
  json endpoints = json::array();
  int64_t ready = 0;
  double requests_per_s = 0, p99_ms = 0;
  bool rolling = false;
  jobs_.ForEach([&](int64_t id, const ActiveJob& job) {
    if (job.service != s.name) return;
    const bool is_ready = ReplicaReady(id, job);
    json r = {{"job_id", id},
              {"state", core::JobStateName(job.state)},
              {"attempt", job.attempt},
              {"version", Version(job.model)},
              {"ready", is_ready}};
    if (!job.allocation.empty()) r["node"] = job.allocation.front().first;
    if (job.state == core::JobState::kPending) r["reason"] = job.reason;
    auto status = serve_status_.find(id);
    if (status != serve_status_.end() && status->second.attempt == job.attempt) {
      const json& report = status->second.report;
      r["endpoint"] = report.value("endpoint", "");
      r["requests_per_s"] = Number(report, "requests_per_s");
      r["p99_ms"] = Number(report, "p99_ms");
      r["requests"] = report.value("requests", int64_t{0});
      if (is_ready) {
        endpoints.push_back(report.value("endpoint", ""));
        requests_per_s += Number(report, "requests_per_s");
        p99_ms = std::max(p99_ms, Number(report, "p99_ms"));
      }
    }
    rolling = rolling || job.model != s.model;
    ready += is_ready ? 1 : 0;
    replicas.push_back(r);
  });
  std::sort(replicas.begin(), replicas.end(),
            [](const json& a, const json& b) { return a["job_id"] < b["job_id"]; });
  view["ready"] = ready;
  view["rolling"] = rolling;
  view["endpoints"] = endpoints;
  view["requests_per_s"] = requests_per_s;
  view["p99_ms"] = p99_ms;
  view["replica_jobs"] = replicas;
  view["path"] = "/v2/models/" + s.name;
  return view;
}

void SchedulerService::OnDeploy(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::DeployRequest, request);
  if (!IsValidServiceName(request.name)) {
    return ReplyError(req, Status::InvalidArgument("body.name: " + ServiceNameRule()));
  }
  const ServiceRecord* existing = services_.Find(request.name);
  const std::string target = "service " + request.name;
  if (request.update && existing == nullptr) {
    return ReplyError(req, Status::NotFound("no service " + request.name +
                                            ": deploy it first (without --update)"));
  }
  if (!request.update && existing != nullptr) {
    const bool visible = core::MaySeeService(req.caller, existing->user, existing->grants);
    return ReplyError(req, Status(StatusCode::kAlreadyExists,
                                  "service " + request.name + " exists" +
                                      (visible ? " (owned by " + existing->user + ")" : "") +
                                      ": use --update to roll it to another checkpoint, or pick "
                                      "another name"));
  }
  if (existing != nullptr) {
    KILN_PERMIT_OR_REPLY(core::MayManageService(req.caller, existing->name, existing->user),
                         "deploy", target);
  }
  std::vector<std::string> errors;
  auto range = [&](const char* field, const std::optional<int64_t>& v, int64_t lo, int64_t hi) {
    if (v && (*v < lo || *v > hi)) {
      errors.push_back(std::string("body.") + field + ": must be " + std::to_string(lo) + ".." +
                       std::to_string(hi) + ", got " + std::to_string(*v));
    }
  };
  range("replicas", request.replicas, 0, kMaxReplicas);
  range("cpus_per_replica", request.cpus_per_replica, 1, 1024);
  range("gpus_per_replica", request.gpus_per_replica, 0, 64);
  range("max_batch", request.max_batch, 1, 4096);
  if (request.max_delay_ms && !(*request.max_delay_ms >= 0 && *request.max_delay_ms <= 10000)) {
    errors.push_back("body.max_delay_ms: must be 0..10000");
  }
  std::optional<int64_t> memory;
  if (request.memory_per_replica) {
    memory = ParseSize(*request.memory_per_replica);
    if (!memory || *memory < 0) {
      errors.push_back("body.memory_per_replica: a size like \"2G\" or \"512M\", got \"" +
                       *request.memory_per_replica + "\"");
    }
  }
  if (request.step && request.best) {
    errors.push_back("body.step: give a step or best, not both");
  }
  if (!errors.empty()) {
    return ReplyError(req, Status::InvalidArgument("deploy refused: " + errors.front()), errors);
  }
  // The checkpoint: the job's latest, a given step, or its best by its keep_best metric.
  KILN_JOB_OR_REPLY(request.job_id, source);
  KILN_PERMIT_OR_REPLY(
      core::MayActOnJob(req.caller, core::JobAction::kCheckpoints, source.id, source.user),
      "deploy", target);
  SpecParseResult trained = ParseJobSpec(source.spec);
  if (!trained.ok() || trained.spec.serve) {
    return ReplyError(req, Status::InvalidArgument("job " + std::to_string(source.id) +
                                                   " is not a training job: deploy a job that "
                                                   "trained the model"));
  }
  if (trained.spec.IsRegression()) {
    return ReplyError(req, Status::InvalidArgument(
                               "job " + std::to_string(source.id) +
                               " is a regression (loss mse); kiln serves classifiers for now"));
  }
  std::optional<CheckpointRecord> chosen;
  if (request.best) {
    auto all = store_->Checkpoints(source.id);
    KILN_OK_OR_REPLY(all);
    const std::string metric = trained.spec.checkpoint.best_metric;
    const bool maximize = trained.spec.checkpoint.best_mode == "max";
    for (const auto& c : *all) {
      auto it = c.metrics.find(metric);
      if (it == c.metrics.end() || !it->is_number()) continue;
      const double v = it->get<double>();
      if (!chosen || (maximize ? v > chosen->metrics[metric].get<double>()
                               : v < chosen->metrics[metric].get<double>())) {
        chosen = c;
      }
    }
    if (!chosen) {
      return ReplyError(
          req, Status::NotFound("job " + std::to_string(source.id) + ": no checkpoint records " +
                                metric + " (see kiln ckpt ls " + std::to_string(source.id) + ")"));
    }
  } else {
    auto found = store_->FindCheckpoint(source.id, request.step.value_or(-1));
    KILN_OK_OR_REPLY(found);
    if (!found->has_value()) {
      return ReplyError(
          req, Status::NotFound("job " + std::to_string(source.id) + ": no checkpoint" +
                                (request.step ? " at step " + std::to_string(*request.step) : "") +
                                " (see kiln ckpt ls " + std::to_string(source.id) + ")"));
    }
    chosen = **found;
  }
  ServiceRecord s = existing != nullptr ? *existing : ServiceRecord{};
  const Millis now = clock_.WallMs();
  if (existing == nullptr) {
    s.name = request.name;
    s.user = req.caller.user;
    s.created_at = now;
  }
  s.model = {chosen->job_id, chosen->step};
  if (request.replicas) s.replicas = *request.replicas;
  if (request.cpus_per_replica) s.cpus_per_replica = *request.cpus_per_replica;
  if (memory) s.memory_per_replica = *memory;
  if (request.gpus_per_replica) s.gpus_per_replica = *request.gpus_per_replica;
  if (request.max_batch) s.max_batch = *request.max_batch;
  if (request.max_delay_ms) s.max_delay_ms = *request.max_delay_ms;
  s.state = "active";
  s.reason.clear();
  s.failures = 0;
  s.updated_at = now;
  // Replicas of an old model that differ only in resources or batching roll too: each replica's
  // spec is fixed when it starts, so a changed setting needs new replicas.
  if (existing != nullptr &&
      (existing->cpus_per_replica != s.cpus_per_replica ||
       existing->memory_per_replica != s.memory_per_replica ||
       existing->gpus_per_replica != s.gpus_per_replica || existing->max_batch != s.max_batch ||
       existing->max_delay_ms != s.max_delay_ms) &&
      existing->model == s.model) {
    return ReplyError(
        req, Status::InvalidArgument("deploy --update: to change resources or batching, roll to a "
                                     "checkpoint at the same time, or undeploy and deploy again"));
  }
  auto spec = ReplicaSpec(source.spec, s);
  if (!spec.ok()) return ReplyError(req, spec.status());
  Status put = services_.Put(s);
  if (!put.ok()) return ReplyError(req, put);
  services_dirty_ = true;
  Audit(req, request.update ? "deploy_update" : "deploy", target, Status::Ok(),
        "model " + Version(s.model));
  spdlog::info("service {}: {} model {} ({} replicas) by {}", s.name,
               request.update ? "rolling to" : "deployed", Version(s.model), s.replicas,
               req.caller.user);
  ReconcileServicesNow();
  Reply(req, protocol::DataReply{ServiceView(s)});
}

void SchedulerService::ReconcileServicesNow() {
  // Not in the first seconds after a start: readiness is not known yet (ReconcileServices).
  services_dirty_ = true;
  ReconcileServices();
}

void SchedulerService::OnUndeploy(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::UndeployRequest, request);
  const ServiceRecord* s = services_.Find(request.name);
  if (s == nullptr) return ReplyError(req, Status::NotFound("no service " + request.name));
  const std::string target = "service " + request.name;
  KILN_PERMIT_OR_REPLY(core::MayManageService(req.caller, s->name, s->user), "undeploy", target);
  std::vector<int64_t> replicas;
  jobs_.ForEach([&](int64_t id, const ActiveJob& job) {
    if (job.service == request.name) replicas.push_back(id);
  });
  for (int64_t id : replicas)
    StopReplica(id, "service " + request.name + " undeployed by " + req.caller.user);
  Status removed = services_.Remove(request.name);
  if (!removed.ok()) return ReplyError(req, removed);
  Audit(req, "undeploy", target, Status::Ok());
  Reply(req,
        protocol::DataReply{json{{"name", request.name}, {"stopped_replicas", replicas.size()}}});
}

void SchedulerService::OnServices(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::ServicesRequest, request);
  json out = json::array();
  for (const auto& [name, s] : services_.all()) {
    if (request.name && *request.name != name) continue;
    if (!core::MaySeeService(req.caller, s.user, s.grants)) continue;
    out.push_back(ServiceView(s, request.name.has_value()));
  }
  if (request.name && out.empty()) {
    return ReplyError(req, Status::NotFound("no service " + *request.name +
                                            " that you may see (kiln services lists them)"));
  }
  Reply(req, protocol::DataReply{out});
}

void SchedulerService::OnServiceGrant(Request& req) {
  KILN_DECODE_OR_REPLY(protocol::ServiceGrantRequest, request);
  const ServiceRecord* found = services_.Find(request.name);
  if (found == nullptr) return ReplyError(req, Status::NotFound("no service " + request.name));
  const std::string target = "service " + request.name;
  KILN_PERMIT_OR_REPLY(core::MayManageService(req.caller, found->name, found->user),
                       request.revoke ? "service_revoke" : "service_grant", target);
  if (users_.count(request.user) == 0 && !request.revoke) {
    return ReplyError(req, Status::NotFound("body.user: no user " + request.user));
  }
  ServiceRecord s = *found;
  auto at = std::find(s.grants.begin(), s.grants.end(), request.user);
  if (request.revoke && at != s.grants.end()) s.grants.erase(at);
  if (!request.revoke && at == s.grants.end() && request.user != s.user) {
    s.grants.push_back(request.user);
    std::sort(s.grants.begin(), s.grants.end());
  }
  s.updated_at = clock_.WallMs();
  Status put = services_.Put(s);
  if (!put.ok()) return ReplyError(req, put);
  PushServeTokens();
  Audit(req, request.revoke ? "service_revoke" : "service_grant", target, Status::Ok(),
        "user " + request.user);
  Reply(req, protocol::DataReply{ServiceView(s)});
}

}  // namespace kiln::service
