#include "scheduler/cli/checkpoint_pull.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "scheduler/core/checkpoint_retention.h"

namespace kiln::cli {

namespace {
constexpr int64_t kChunkBytes = 8 << 20;
}  // namespace

Result<PulledCheckpoint> PullCheckpoint(SchedulerClient& client, int64_t job_id, int64_t step,
                                        const std::string& dir) {
  // The first chunk also tells which step "latest" is, the size and the hash. Nothing is
  // written before the scheduler has agreed to send it.
  auto first = client.Call(protocol::CheckpointRead{job_id, step, 0, kChunkBytes});
  if (!first.ok()) return first.status();
  KILN_RETURN_IF_ERROR(MakeDirs(dir));
  auto head = protocol::DecodeBody<protocol::CheckpointData>(*first);
  if (!head.ok()) return head.status();
  PulledCheckpoint out{dir + "/job-" + std::to_string(job_id) + "-step-" +
                           std::to_string(head->step) + ".pt",
                       head->step, head->bytes, head->sha256};
  auto existing = Sha256OfFile(out.path);
  if (existing.ok() && *existing == out.sha256) return out;

  const std::string tmp = out.path + ".part";
  std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
  if (!file) return Status::IoError("cannot write " + tmp);
  int64_t offset = 0;
  while (true) {
    auto reply = offset == 0 ? std::move(first)
                             : client.Call(protocol::CheckpointRead{job_id, out.step, offset,
                                                                    kChunkBytes});
    if (!reply.ok()) return reply.status();
    auto data = protocol::DecodeBody<protocol::CheckpointData>(*reply);
    if (!data.ok()) return data.status();
    if (data->sha256 != out.sha256) {
      return Status::FailedPrecondition("checkpoint changed during the download; try again");
    }
    // The bytes frame travels beside the envelope; SchedulerClient keeps it for us.
    const std::string& bytes = client.last_binary();
    if (bytes.empty() && offset < out.bytes) {
      return Status::IoError("scheduler sent no bytes at offset " + std::to_string(offset));
    }
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    offset += static_cast<int64_t>(bytes.size());
    if (offset >= out.bytes) break;
  }
  file.close();
  if (!file) return Status::IoError("cannot write " + tmp);
  auto sha = Sha256OfFile(tmp);
  if (!sha.ok()) return sha.status();
  if (*sha != out.sha256) {
    std::remove(tmp.c_str());
    return Status::IoError("downloaded checkpoint hashes to " + *sha + ", expected " + out.sha256);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, out.path, ec);
  if (ec) return Status::IoError("cannot rename " + tmp + ": " + ec.message());
  return out;
}

Result<int64_t> BestCheckpointStep(const nlohmann::json& job_view) {
  CheckpointSpec spec;
  if (job_view.contains("spec")) spec = ParseJobSpec(job_view["spec"]).spec.checkpoint;
  std::vector<core::RetainedCheckpoint> candidates;
  for (const auto& c : job_view.value("checkpoints", nlohmann::json::array())) {
    core::RetainedCheckpoint r{c.value("step", int64_t{0}), std::nullopt};
    const auto& m = c.value("metrics", nlohmann::json::object());
    if (m.contains(spec.best_metric) && m[spec.best_metric].is_number()) {
      r.metric = m[spec.best_metric].get<double>();
    }
    candidates.push_back(r);
  }
  auto best = core::BestCheckpoint(candidates, spec.best_mode == "max");
  if (!best) {
    return Status::NotFound("no checkpoint of job " + job_view.value("id", nlohmann::json()).dump() +
                            " reports " + spec.best_metric);
  }
  return *best;
}

}  // namespace kiln::cli
