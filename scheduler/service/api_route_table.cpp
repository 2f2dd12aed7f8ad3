// The routes of /api/v1: for each, the protocol request it makes (the CLI's) from the path,
// query and body values, and what its answer holds.
#include <charconv>

#include "scheduler/service/api_route_table.h"

namespace kiln::service::api {

using protocol::Envelope;

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kBool: return "boolean";
    case Kind::kInt: return "integer";
    case Kind::kNumber:
      return "number";
    case Kind::kString: return "string";
    case Kind::kStringList: return "string";  // comma-separated in a query
    case Kind::kObject: return "object";
  }
  return "string";
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = text.find(sep, start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) return std::nullopt;
  return value;
}

namespace {

// A path value MatchPath has checked ({id}, or {step} other than "latest").
int64_t PathInt(const Bound& b, const std::string& name) {
  return ParseInt(b.path.at(name)).value_or(0);
}

template <typename M>
Result<Envelope> Make(const M& message) {
  return protocol::MakeEnvelope(message);
}

std::optional<int64_t> OptInt(const json& j, const char* name) {
  if (!j.contains(name)) return std::nullopt;
  return j[name].get<int64_t>();
}

protocol::DeployRequest DeployFromBody(const Bound& b, const std::string& name, bool update) {
  protocol::DeployRequest r;
  r.name = name;
  r.update = update;
  r.job_id = b.body["job_id"].get<int64_t>();
  r.step = OptInt(b.body, "step");
  r.best = b.body.value("best", false);
  r.replicas = OptInt(b.body, "replicas");
  r.cpus_per_replica = OptInt(b.body, "cpus_per_replica");
  if (b.body.contains("memory_per_replica")) {
    r.memory_per_replica = b.body["memory_per_replica"].get<std::string>();
  }
  r.gpus_per_replica = OptInt(b.body, "gpus_per_replica");
  r.max_batch = OptInt(b.body, "max_batch");
  if (b.body.contains("max_delay_ms")) r.max_delay_ms = b.body["max_delay_ms"].get<double>();
  return r;
}

}  // namespace

const std::vector<Route>& Routes() {
  static const std::vector<Route> routes = {
      {"GET",
       "/whoami",
       "The user the token belongs to",
       {},
       {},
       [](const Bound&) { return Make(protocol::WhoAmIRequest{}); },
       200,
       false,
       "{\"user\": NAME, \"admin\": BOOL}"},
      {"GET",
       "/jobs",
       "List jobs (kiln queue --json), one page at a time",
       {{"all", Kind::kBool, "include finished jobs"},
        {"user", Kind::kString, "only this user's jobs"},
        {"state", Kind::kStringList,
         "only jobs in these states, comma-separated (PENDING,RUNNING,...); finished states "
         "named here are listed without all"},
        {"limit", Kind::kInt, "at most this many jobs (1 to 1000, default 1000)"},
        {"after_id", Kind::kInt, "jobs with a larger id: the previous page's next_after_id"}},
       {},
       [](const Bound& b) -> Result<Envelope> {
         protocol::QueueRequest r;
         r.all = b.query.value("all", false);
         r.limit = b.query.value("limit", int64_t{1000});
         if (*r.limit < 1 || *r.limit > 1000) {
           return Status::InvalidArgument("limit: must be between 1 and 1000, got " +
                                          std::to_string(*r.limit));
         }
         r.after_id = OptInt(b.query, "after_id");
         if (b.query.contains("user")) r.user = b.query["user"].get<std::string>();
         if (b.query.contains("state")) {
           r.states.emplace();
           for (std::string s : b.query["state"]) {
             for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
             r.states->push_back(s);
           }
           r.all = true;
         }
         return Make(r);
       },
       200,
       false,
       "{\"jobs\": [JOB...], \"next_after_id\": ID or null}"},
      {"POST",
       "/jobs",
       "Submit a job (kiln submit)",
       {},
       {{"spec", Kind::kObject, "the job spec (docs/job-spec.md)", true},
        {"hold", Kind::kBool, "queue it held: it waits until released"},
        {"request_id", Kind::kString,
         "a client-made id: a retried submit with the same id returns the same job"},
        {"resume_from_job", Kind::kInt, "start from a checkpoint of this job"},
        {"resume_from_step", Kind::kInt, "that job's checkpoint at this step (default latest)"},
        {"user", Kind::kString, "submit as this user (admins only)"},
        {"array", Kind::kString,
         "a job array: INDICES[%MAX], e.g. 0-999%8 (docs/job-spec.md, Job arrays)"},
        {"sweep", Kind::kObject,
         "a sweep without its base, which is spec (docs/sweeps.md): an array of trials"}},
       [](const Bound& b) -> Result<Envelope> {
         protocol::SubmitRequest r;
         if (b.body.contains("array")) r.array = b.body["array"].get<std::string>();
         if (b.body.contains("sweep")) r.sweep = b.body["sweep"];
         r.spec = b.body["spec"];
         r.hold = b.body.value("hold", false);
         r.request_id = b.body.value("request_id", std::string());
         if (r.request_id.empty()) r.request_id = b.fresh_request_id;
         r.resume_from_job = OptInt(b.body, "resume_from_job");
         r.resume_from_step = OptInt(b.body, "resume_from_step");
         r.user = b.body.value("user", std::string());
         return Make(r);
       },
       201,
       false,
       "{\"job_id\": ID, \"duplicate\": BOOL, \"warning\": TEXT (when it cannot start now)}"},
      {"GET",
       "/jobs/{id}",
       "One job (kiln show --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::ShowRequest{PathInt(b, "id")}); },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/cancel",
       "Cancel a job (kiln cancel)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::CancelRequest{PathInt(b, "id")}); },
       200,
       false,
       "{\"job_id\": ID, \"state\": STATE}"},
      {"POST",
       "/jobs/{id}/hold",
       "Hold a pending job (kiln hold)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "hold", 0});
       },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/release",
       "Release a held job (kiln release)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "release", 0});
       },
       200,
       false,
       "JOB"},
      {"POST",
       "/jobs/{id}/priority",
       "Set a job's priority (kiln priority; raising it: admins)",
       {},
       {{"priority", Kind::kInt, "the new priority", true}},
       [](const Bound& b) {
         return Make(protocol::JobAdminRequest{PathInt(b, "id"), "priority",
                                               b.body["priority"].get<int64_t>()});
       },
       200,
       false,
       "JOB"},
      {"GET",
       "/jobs/{id}/logs",
       "A page of a job's output (kiln logs --json)",
       {{"after_seq", Kind::kInt, "lines after this seq: the previous page's next_after_seq"},
        {"limit", Kind::kInt, "at most this many lines (1 to 5000, default 1000)"},
        {"attempt", Kind::kInt, "only this attempt's lines"},
        {"rank", Kind::kInt, "only lines of this rank"},
        {"tail", Kind::kInt, "start at the tail-th last line"},
        {"since_ms", Kind::kInt, "only lines stored at or after this time (ms since 1970)"}},
       {},
       [](const Bound& b) -> Result<Envelope> {
         protocol::LogsRequest r;
         r.job_id = PathInt(b, "id");
         r.after_seq = b.query.value("after_seq", int64_t{0});
         r.limit = b.query.value("limit", int64_t{1000});
         if (r.limit < 1 || r.limit > 5000) {
           return Status::InvalidArgument("limit: must be between 1 and 5000, got " +
                                          std::to_string(r.limit));
         }
         r.attempt = OptInt(b.query, "attempt");
         r.rank = OptInt(b.query, "rank");
         r.tail = OptInt(b.query, "tail");
         r.since_ms = OptInt(b.query, "since_ms");
         return Make(r);
       },
       200,
       false,
       "{\"lines\": [{\"seq\", \"attempt\", \"time\", \"line\"}...], \"next_after_seq\": SEQ, "
       "\"more\": BOOL, \"finished\": BOOL}"},
      {"GET",
       "/jobs/{id}/metrics",
       "A job's metrics history: its step reports and epoch reports, downsampled to at most "
       "about 400 points each (kiln metrics --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::MetricsHistoryRequest{PathInt(b, "id")}); },
       200,
       false,
       "{\"job_id\", \"step\": [{\"time\", \"attempt\", \"step\", \"loss\", ...}], "
       "\"epoch\": [{\"time\", \"attempt\", \"epoch\", \"test_accuracy\", ...}]}"},
      {"GET",
       "/jobs/{id}/checkpoints",
       "A job's checkpoints (kiln ckpt ls --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::CheckpointsRequest{PathInt(b, "id")}); },
       200,
       false,
       "[CHECKPOINT...]"},
      {"GET",
       "/jobs/{id}/checkpoints/{step}",
       "Download a checkpoint's bytes ({step}: a step or \"latest\"); the X-Checkpoint-Sha256 "
       "header carries its sha256",
       {},
       {},
       [](const Bound& b) {
         const std::string& step = b.path.at("step");
         return Make(protocol::CheckpointRead{
             PathInt(b, "id"), step == "latest" ? -1 : PathInt(b, "step"), 0, 8 << 20});
       },
       200,
       true,
       "the file (application/octet-stream)"},
      {"DELETE",
       "/jobs/{id}/checkpoints/{step}",
       "Delete a checkpoint (kiln ckpt rm)",
       {},
       {},
       [](const Bound& b) -> Result<Envelope> {
         const std::string& step = b.path.at("step");
         if (step == "latest") {
           return Status::InvalidArgument("step: name the step to delete, not \"latest\"");
         }
         return Make(protocol::CheckpointRemove{PathInt(b, "id"), PathInt(b, "step")});
       },
       200,
       false,
       "{\"removed\": BOOL} (false: there was no such checkpoint)"},
      {"GET",
       "/nodes",
       "The nodes (kiln nodes --json)",
       {},
       {},
       [](const Bound&) { return Make(protocol::NodesRequest{}); },
       200,
       false,
       "[NODE...]"},
      {"POST",
       "/nodes/{node}/drain",
       "Drain a node (admins; kiln node drain)",
       {},
       {{"reason", Kind::kString, "why, shown with the node"},
        {"requeue", Kind::kBool,
         "stop the jobs running there now; they checkpoint and wait to resume elsewhere"}},
       [](const Bound& b) {
         return Make(protocol::NodeAdminRequest{
             b.path.at("node"), b.body.value("requeue", false) ? "drain_requeue" : "drain",
             b.body.value("reason", std::string())});
       },
       200,
       false,
       "NODE"},
      {"GET",
       "/services",
       "The services the caller may see: their own, those granted to them (admins: all) "
       "(kiln services --json)",
       {},
       {},
       [](const Bound&) { return Make(protocol::ServicesRequest{}); },
       200,
       false,
       "[SERVICE...]"},
      {"GET",
       "/services/{name}",
       "One service, with its replicas' spec (kiln services NAME --json)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::ServicesRequest{b.path.at("name")}); },
       200,
       false,
       "[SERVICE]"},
      {"POST",
       "/services",
       "Deploy a job's checkpoint as a service (kiln deploy; docs/serving.md)",
       {},
       {{"name", Kind::kString, "the service's name (the model's name in URLs)", true},
        {"job_id", Kind::kInt, "the trained job", true},
        {"step", Kind::kInt, "its checkpoint at this step (default: the latest)"},
        {"best", Kind::kBool, "its best checkpoint by its keep_best metric"},
        {"replicas", Kind::kInt, "replicas to keep running (default 1)"},
        {"cpus_per_replica", Kind::kInt, "slots and threads of each (default 1)"},
        {"memory_per_replica", Kind::kString, "memory of each, like \"2G\""},
        {"gpus_per_replica", Kind::kInt, "GPUs of each (default 0)"},
        {"max_batch", Kind::kInt, "rows per forward pass at most (default 32)"},
        {"max_delay_ms", Kind::kNumber, "longest a request waits to be batched (default 2)"}},
       [](const Bound& b) {
         return Make(DeployFromBody(b, b.body["name"].get<std::string>(), false));
       },
       201,
       false,
       "SERVICE"},
      {"POST",
       "/services/{name}/update",
       "Roll a service to another checkpoint, or scale it (kiln deploy --update)",
       {},
       {{"job_id", Kind::kInt, "the trained job", true},
        {"step", Kind::kInt, "its checkpoint at this step (default: the latest)"},
        {"best", Kind::kBool, "its best checkpoint by its keep_best metric"},
        {"replicas", Kind::kInt, "replicas to keep running"},
        {"cpus_per_replica", Kind::kInt, "slots and threads of each"},
        {"memory_per_replica", Kind::kString, "memory of each, like \"2G\""},
        {"gpus_per_replica", Kind::kInt, "GPUs of each"},
        {"max_batch", Kind::kInt, "rows per forward pass at most"},
        {"max_delay_ms", Kind::kNumber, "longest a request waits to be batched"}},
       [](const Bound& b) { return Make(DeployFromBody(b, b.path.at("name"), true)); },
       200,
       false,
       "SERVICE"},
      {"DELETE",
       "/services/{name}",
       "Stop a service's replicas and remove it (kiln undeploy)",
       {},
       {},
       [](const Bound& b) { return Make(protocol::UndeployRequest{b.path.at("name")}); },
       200,
       false,
       "{\"name\": NAME, \"stopped_replicas\": N}"},
      {"POST",
       "/services/{name}/grant",
       "Let a user call the service (its owner or an admin; kiln service grant)",
       {},
       {{"user", Kind::kString, "the user", true}},
       [](const Bound& b) {
         return Make(protocol::ServiceGrantRequest{b.path.at("name"),
                                                   b.body["user"].get<std::string>(), false});
       },
       200,
       false,
       "SERVICE"},
      {"POST",
       "/services/{name}/revoke",
       "Stop letting a user call the service (kiln service revoke)",
       {},
       {{"user", Kind::kString, "the user", true}},
       [](const Bound& b) {
         return Make(protocol::ServiceGrantRequest{b.path.at("name"),
                                                   b.body["user"].get<std::string>(), true});
       },
       200,
       false,
       "SERVICE"},
      {"POST",
       "/nodes/{node}/resume",
       "Resume a drained node (admins; kiln node resume)",
       {},
       {},
       [](const Bound& b) {
         return Make(protocol::NodeAdminRequest{b.path.at("node"), "resume", ""});
       },
       200,
       false,
       "NODE"},
  };
  return routes;
}


}  // namespace kiln::service::api
