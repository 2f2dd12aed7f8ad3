// A worker key reaches only the attempts placed on that worker: an admitted but rogue worker
// cannot add a checkpoint to a job that does not run on it, cannot obtain or attach another job's
// checkpoint by knowing its hash, and cannot interfere with another worker's upload.
#include <catch2/catch.hpp>

#include "common/file_util.h"
#include "common/protocol/codec.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/raw_client.h"

using kiln::testing::AsRootAgent;
using kiln::testing::LocalCluster;
using kiln::testing::RawClient;
using kiln::testing::SyntheticSpec;
using namespace kiln::protocol;
using nlohmann::json;

namespace {

void Register(RawClient& worker, const std::string& name) {
  worker.Send(Encode(AsRootAgent(RegisterWorker{name, 1, 1 << 30, 0, {}, {}, "", ""})));
  REQUIRE(worker.Expect("register_ack", 5000));
}

int64_t LaunchedJob(RawClient& worker) {
  auto launch = worker.Expect("launch", 10000);
  REQUIRE(launch);
  return launch->first.body["job_id"];
}

json Checkpoints(LocalCluster& cluster, int64_t id) {
  return json::parse(cluster.Kiln({"ckpt", "ls", std::to_string(id), "--json"}).out);
}

}  // namespace

TEST_CASE("a rogue worker cannot add, attach or obtain checkpoints of jobs not placed on it") {
  LocalCluster cluster(1, 30.0, /*with_worker=*/false);
  RawClient honest(cluster, /*as_worker=*/true);
  Register(honest, "honest");
  const int64_t victim = cluster.Submit(SyntheticSpec("victim", 1, 1, 64));
  REQUIRE(LaunchedJob(honest) == victim);
  honest.Send(Encode(Heartbeat{"honest", {{victim, 1}}}));

  RawClient rogue(cluster, /*as_worker=*/true);  // holds the cluster key: admitted
  Register(rogue, "rogue");
  const std::string bytes(4000, 'v');
  const std::string sha = kiln::Sha256Hex(bytes);

  // 1. A checkpoint for the victim's job, which does not run on the rogue: refused.
  rogue.Send(Encode(CheckpointBegin{victim, 1, 10, 0, json::object(), 4000, sha, std::nullopt}));
  auto refused = rogue.ExpectAnyOf({"ckpt_done", "ckpt_offset"}, 5000);
  REQUIRE(refused);
  CHECK(refused->first.type == "ckpt_done");
  CHECK(refused->first.body["ok"] == false);
  CHECK(refused->first.body["reason"].get<std::string>().find("not placed on this worker") !=
        std::string::npos);

  // The honest worker uploads; the rogue's chunks for that upload are refused on the way.
  honest.Send(Encode(CheckpointBegin{victim, 1, 10, 0, json::object(), 4000, sha, std::nullopt}));
  REQUIRE(honest.Expect("ckpt_offset", 5000));
  rogue.Send(Encode(CheckpointChunk{sha, 0}, "", {std::string(4000, 'x')}));
  auto interfered = rogue.Expect("ckpt_done", 5000);
  REQUIRE(interfered);
  CHECK(interfered->first.body["ok"] == false);
  CHECK(interfered->first.body["reason"].get<std::string>().find("another worker") !=
        std::string::npos);
  honest.Send(Encode(CheckpointChunk{sha, 0}, "", {bytes}));
  auto stored = honest.Expect("ckpt_done", 5000);
  REQUIRE(stored);
  CHECK(stored->first.body["ok"] == true);
  REQUIRE(Checkpoints(cluster, victim).size() == 1);

  // 2. A job of the rogue's own claims the victim's blob by its hash: it must send the bytes.
  const int64_t own = cluster.Submit(SyntheticSpec("rogues-own", 1, 1, 64));
  REQUIRE(LaunchedJob(rogue) == own);
  rogue.Send(Encode(Heartbeat{"rogue", {{own, 1}}}));
  rogue.Send(Encode(CheckpointBegin{own, 1, 10, 0, json::object(), 4000, sha, std::nullopt}));
  auto asked = rogue.ExpectAnyOf({"ckpt_done", "ckpt_offset"}, 5000);
  REQUIRE(asked);
  CHECK(asked->first.type == "ckpt_offset");  // not attached: upload the bytes first
  rogue.Send(Encode(CheckpointChunk{sha, 0}, "", {std::string(4000, 'x')}));  // it has not got them
  auto mismatch = rogue.Expect("ckpt_done", 5000);
  REQUIRE(mismatch);
  CHECK(mismatch->first.body["ok"] == false);
  CHECK(Checkpoints(cluster, own).empty());

  // 3. Reading the victim's checkpoint as a worker: refused.
  rogue.Send(Encode(CheckpointRead{victim, 10, 0, 4000}));
  auto read = rogue.ExpectAnyOf({"ckpt_data", "error"}, 5000);
  REQUIRE(read);
  CHECK(read->first.type == "error");

  // Each refusal is in the audit table.
  auto audit = cluster.Admin({"audit"});
  CHECK(audit.out.find("ckpt.upload") != std::string::npos);
  CHECK(audit.out.find("worker rogue") != std::string::npos);
}
