// Services (docs/serving.md): the requests that deploy, update, undeploy, list and grant them.
// What keeps their replicas running is service_reconcile.cpp.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/quantities.h"
#include "scheduler/core/checkpoint_retention.h"
#include "scheduler/service/handler_macros.h"
#include "scheduler/service/scheduler_service.h"

namespace kiln::service {

using nlohmann::json;

namespace {

constexpr int64_t kMaxReplicas = 64;

double Number(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

}  // namespace

json SchedulerService::ServiceView(const ServiceRecord& s, bool with_spec) {
  json view = ServiceToJson(s);
  if (with_spec) {
    // What a client needs to read input files as the model does (kiln predict --service): the
    // replicas' spec, which holds the trained job's model and data sections.
    auto source = store_->GetJob(s.model.job);
    if (source.ok() && source->has_value()) {
      auto spec = ReplicaSpecOf((*source)->spec, s);
      if (spec.ok()) view["spec"] = *spec;
    }
  }
  view.erase("failures");
  view["model"] = {{"job", s.model.job}, {"step", s.model.step}};
  view["version"] = ModelVersion(s.model);
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
              {"version", ModelVersion(job.model)},
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

Result<CheckpointRecord> SchedulerService::DeployedCheckpoint(
    int64_t job_id, const CheckpointSpec& spec, const protocol::DeployRequest& request) {
  const std::string see = " (see kiln ckpt ls " + std::to_string(job_id) + ")";
  std::optional<int64_t> step = request.step;
  if (request.best) {
    auto all = store_->Checkpoints(job_id);
    if (!all.ok()) return all.status();
    std::vector<core::RetainedCheckpoint> ranked;
    for (const auto& c : *all) {
      auto it = c.metrics.find(spec.best_metric);
      ranked.push_back({c.step, it != c.metrics.end() && it->is_number()
                                    ? std::optional<double>(it->get<double>())
                                    : std::nullopt});
    }
    step = core::BestCheckpoint(ranked, spec.best_mode == "max");
    if (!step) {
      return Status::NotFound("job " + std::to_string(job_id) + ": no checkpoint records " +
                              spec.best_metric + see);
    }
  }
  auto found = store_->FindCheckpoint(job_id, step.value_or(-1));
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return Status::NotFound("job " + std::to_string(job_id) + ": no checkpoint" +
                            (step ? " at step " + std::to_string(*step) : "") + see);
  }
  return **found;
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
  auto chosen = DeployedCheckpoint(source.id, trained.spec.checkpoint, request);
  if (!chosen.ok()) return ReplyError(req, chosen.status());
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
  auto spec = ReplicaSpecOf(source.spec, s);
  if (!spec.ok()) return ReplyError(req, spec.status());
  Status put = services_.Put(s);
  if (!put.ok()) return ReplyError(req, put);
  services_dirty_ = true;
  Audit(req, request.update ? "deploy_update" : "deploy", target, Status::Ok(),
        "model " + ModelVersion(s.model));
  spdlog::info("service {}: {} model {} ({} replicas) by {}", s.name,
               request.update ? "rolling to" : "deployed", ModelVersion(s.model), s.replicas,
               req.caller.user);
  ReconcileServicesNow();
  Reply(req, protocol::DataReply{ServiceView(s)});
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
