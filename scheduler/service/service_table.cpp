#include "scheduler/service/service_table.h"

#include "common/job_spec.h"

namespace kiln::service {

using nlohmann::json;

json ServiceToJson(const ServiceRecord& s) {
  return {{"name", s.name},
          {"user", s.user},
          {"model_job", s.model.job},
          {"model_step", s.model.step},
          {"replicas", s.replicas},
          {"cpus_per_replica", s.cpus_per_replica},
          {"memory_per_replica", s.memory_per_replica},
          {"gpus_per_replica", s.gpus_per_replica},
          {"max_batch", s.max_batch},
          {"max_delay_ms", s.max_delay_ms},
          {"grants", s.grants},
          {"state", s.state},
          {"reason", s.reason},
          {"failures", s.failures},
          {"created_at", s.created_at},
          {"updated_at", s.updated_at}};
}

std::string ModelVersion(const core::ModelRef& m) {
  return std::to_string(m.job) + ":" + std::to_string(m.step);
}

Result<json> ReplicaSpecOf(const json& trained_spec, const ServiceRecord& s) {
  if (!trained_spec.is_object()) return Status::Internal("the trained job's spec is not an object");
  json spec = trained_spec;
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

Result<ServiceRecord> ServiceFromJson(const json& j) {
  try {
    ServiceRecord s;
    s.name = j.at("name").get<std::string>();
    s.user = j.at("user").get<std::string>();
    s.model = {j.at("model_job").get<int64_t>(), j.at("model_step").get<int64_t>()};
    s.replicas = j.at("replicas").get<int64_t>();
    s.cpus_per_replica = j.at("cpus_per_replica").get<int64_t>();
    s.memory_per_replica = j.at("memory_per_replica").get<int64_t>();
    s.gpus_per_replica = j.at("gpus_per_replica").get<int64_t>();
    s.max_batch = j.at("max_batch").get<int64_t>();
    s.max_delay_ms = j.at("max_delay_ms").get<double>();
    s.grants = j.at("grants").get<std::vector<std::string>>();
    s.state = j.at("state").get<std::string>();
    s.reason = j.at("reason").get<std::string>();
    s.failures = j.value("failures", int64_t{0});
    s.created_at = j.at("created_at").get<int64_t>();
    s.updated_at = j.at("updated_at").get<int64_t>();
    return s;
  } catch (const json::exception& e) {
    return Status::Internal(std::string("a services row is not a service: ") + e.what());
  }
}

Status ServiceTable::Load() {
  services_.clear();
  auto rows = store_.ListServices();
  if (!rows.ok()) return rows.status();
  for (const json& row : *rows) {
    auto s = ServiceFromJson(row);
    if (!s.ok()) return s.status();
    services_[s->name] = *s;
  }
  return Status::Ok();
}

const ServiceRecord* ServiceTable::Find(const std::string& name) const {
  auto it = services_.find(name);
  return it == services_.end() ? nullptr : &it->second;
}

Status ServiceTable::Put(const ServiceRecord& service) {
  KILN_RETURN_IF_ERROR(store_.PutService(service.name, ServiceToJson(service)));
  services_[service.name] = service;
  return Status::Ok();
}

Status ServiceTable::Remove(const std::string& name) {
  KILN_RETURN_IF_ERROR(store_.DeleteService(name));
  services_.erase(name);
  return Status::Ok();
}

}  // namespace kiln::service
