#include <catch2/catch.hpp>

#include "scheduler/core/gang_placement.h"
#include "tests/sim/scheduler_sim.h"

using namespace kiln;
using namespace kiln::sim;

namespace {

// Fails with the first violations shown.
void RequireClean(const SimResult& r) {
  for (size_t i = 0; i < r.violations.size() && i < 10; ++i) UNSCOPED_INFO(r.violations[i]);
  REQUIRE(r.violation_count == 0);
  REQUIRE(r.jobs_failed == 0);
  REQUIRE(r.jobs_completed == r.jobs);
}

// A small cluster where nothing but slots matters, for fair-share ratios.
ClusterConfig PlainCluster() {
  ClusterConfig c;
  c.nodes = 8;
  c.slots_per_node = 16;
  c.gpu_node_fraction = 0;
  c.label_stride = 0;
  return c;
}

// One user's stream of plain 1..8-rank jobs of 5..60 minutes offering `load` of the cluster.
Trace PlainStream(const ClusterConfig& cluster, uint64_t seed, int jobs, double load) {
  TraceConfig t;
  t.seed = seed;
  t.jobs = jobs;
  t.users = {{"stream", 1, 1}};
  t.load = load;
  t.max_ranks = 8;
  t.gpu_fraction = t.multi_node_fraction = t.ranks_per_node_fraction = t.spread_fraction = 0;
  t.label_fraction = t.memory_fraction = t.priority_fraction = t.no_limit_fraction = 0;
  t.dependency_fraction = 0;
  t.min_limit_ms = 5 * kMinute;
  t.max_limit_ms = 60 * kMinute;
  return GenerateTrace(cluster, t);
}

// rank-seconds of user 0 / user 1 when both submit the same stream, faster than the cluster
// drains (each offers 0.75 of it).
double ShareRatio(double weight_a, double weight_b, uint64_t seed) {
  const ClusterConfig cluster = PlainCluster();
  const Trace trace = IdenticalStreams(PlainStream(cluster, seed, 500, 0.75),
                                       {{"a", weight_a, 1}, {"b", weight_b, 1}});
  SimOptions options;
  options.half_life_s = 3600;
  const SimResult r = Simulate(cluster, trace, options);
  RequireClean(r);
  REQUIRE(r.user_rank_seconds.size() == 2);
  REQUIRE(r.user_rank_seconds[1] > 0);
  return r.user_rank_seconds[0] / r.user_rank_seconds[1];
}

core::RunningJob Running(int64_t id, int32_t node, int64_t ranks, std::vector<int> gpu_ids,
                         Millis end_by, int64_t gpus_per_rank = 0) {
  core::RunningJob r;
  r.id = id;
  r.request.ranks = ranks;
  r.request.gpus_per_rank = gpus_per_rank;
  r.shares = {{node, ranks, std::move(gpu_ids)}};
  r.end_by = end_by;
  return r;
}

}  // namespace

TEST_CASE("sim: the trace generator is seeded and only asks for what the cluster can run") {
  ClusterConfig cluster;
  cluster.nodes = 50;
  TraceConfig config;
  config.jobs = 500;
  const Trace a = GenerateTrace(cluster, config);
  const Trace b = GenerateTrace(cluster, config);
  const auto nodes = BuildNodes(cluster);
  REQUIRE(a.jobs.size() == 500);
  bool multi_node = false, gpus = false, no_limit = false, dependency = false;
  for (size_t i = 0; i < a.jobs.size(); ++i) {
    const SimJob& j = a.jobs[i];
    CHECK(j.id == static_cast<int64_t>(i + 1));
    CHECK(j.request == b.jobs[i].request);
    CHECK(j.submit_at == b.jobs[i].submit_at);
    CHECK_FALSE(core::InfeasibleReason(nodes, j.request));
    CHECK((j.time_limit_ms == 0 || j.runtime_ms <= j.time_limit_ms));
    CHECK(j.runtime_ms > 0);
    if (i > 0) CHECK(j.submit_at >= a.jobs[i - 1].submit_at);
    for (int64_t d : j.depends_on) CHECK(d < j.id);
    multi_node = multi_node || j.request.Slots() > cluster.slots_per_node;
    gpus = gpus || j.request.gpus_per_rank > 0;
    no_limit = no_limit || j.time_limit_ms == 0;
    dependency = dependency || !j.depends_on.empty();
  }
  CHECK(multi_node);
  CHECK(gpus);
  CHECK(no_limit);
  CHECK(dependency);
}

TEST_CASE("sim: the invariant checks catch overbooking, broken gangs and trampled reservations") {
  ClusterConfig cluster;
  cluster.nodes = 2;
  cluster.slots_per_node = 4;
  cluster.gpu_node_fraction = 0.5;  // node 0: 8 GPUs
  cluster.label_stride = 0;
  std::vector<core::NodeState> nodes = BuildNodes(cluster);

  ViolationLog clean;
  RebuildUsage(nodes, {Running(1, 0, 2, {0, 1}, 0, 1), Running(2, 0, 2, {2, 3}, 0, 1)}, clean);
  CHECK(clean.count() == 0);
  CHECK(nodes[0].used_slots == 4);
  CHECK(nodes[0].used_gpu_mask == 0b1111);

  ViolationLog twice;
  RebuildUsage(nodes, {Running(1, 0, 1, {3}, 0, 1), Running(2, 0, 1, {3}, 0, 1)}, twice);
  CHECK(twice.count() == 1);
  ViolationLog over;
  RebuildUsage(nodes, {Running(1, 1, 3, {}, 0), Running(2, 1, 2, {}, 0)}, over);
  CHECK(over.count() == 1);

  core::ResourceRequest gang;
  gang.ranks = 4;
  gang.ranks_per_node = 2;
  ViolationLog partial;
  CheckGang(nodes, gang, {7, {{0, 2, {}}}, false}, partial);
  CHECK(partial.count() == 1);
  ViolationLog uneven;
  CheckGang(nodes, gang, {7, {{0, 3, {}}, {1, 1, {}}}, false}, uneven);
  CHECK(uneven.count() == 2);
  ViolationLog whole;
  CheckGang(nodes, gang, {7, {{0, 2, {}}, {1, 2, {}}}, false}, whole);
  CHECK(whole.count() == 0);

  // Job 9 is reserved all of node 1 at t=100; a job ending at 100 does not hold it then, one
  // ending later does.
  core::ResourceRequest head;
  head.ranks = 4;
  const core::Reservation reservation{9, 100, {{1, 4, {}}}};
  ViolationLog honoured;
  CheckReservationFits(nodes, {Running(1, 1, 4, {}, 100)}, reservation, head, honoured);
  CHECK(honoured.count() == 0);
  ViolationLog trampled;
  CheckReservationFits(nodes, {Running(1, 1, 1, {}, 101)}, reservation, head, trampled);
  CHECK(trampled.count() == 1);
}

TEST_CASE("sim: a mixed workload on 200 nodes keeps every invariant and finishes every job") {
  ClusterConfig cluster;  // 200 nodes × 64 slots, 40 of them with 8 GPUs, labels on a quarter
  cluster.drained_nodes = 2;
  TraceConfig config;
  config.seed = 7;
  config.jobs = 2000;
  config.load = 1.5;
  const SimResult r = Simulate(cluster, GenerateTrace(cluster, config));
  RequireClean(r);
  CHECK(r.backfilled > 0);
  CHECK(r.max_queue > 10);
  CHECK(r.utilisation > 0.2);
}

TEST_CASE("sim: a small crowded cluster with wide gangs and unlimited jobs keeps every invariant") {
  ClusterConfig cluster;
  cluster.nodes = 24;
  cluster.slots_per_node = 16;
  cluster.memory_per_node = 64ll << 30;
  cluster.gpu_node_fraction = 0.5;
  cluster.label_stride = 3;
  cluster.drained_nodes = 1;
  TraceConfig config;
  config.seed = 11;
  config.jobs = 1000;
  config.load = 3;
  config.multi_node_fraction = 0.25;
  config.ranks_per_node_fraction = 0.3;
  config.spread_fraction = 0.2;
  config.label_fraction = 0.3;
  config.memory_fraction = 0.5;
  config.no_limit_fraction = 0.15;
  config.dependency_fraction = 0.1;
  config.priority_fraction = 0.3;
  for (bool backfill : {true, false}) {
    SimOptions options;
    options.backfill = backfill;
    CAPTURE(backfill);
    RequireClean(Simulate(cluster, GenerateTrace(cluster, config), options));
  }
}

TEST_CASE("sim: backfill shortens the mean wait and never delays the blocked head") {
  ClusterConfig cluster;
  cluster.nodes = 100;
  TraceConfig config;
  config.seed = 3;
  config.jobs = 1500;
  config.load = 1.5;
  const Trace trace = GenerateTrace(cluster, config);
  SimOptions with, without;
  without.backfill = false;
  const SimResult on = Simulate(cluster, trace, with);
  const SimResult off = Simulate(cluster, trace, without);
  RequireClean(on);  // includes (c): reservations hold and never move later
  RequireClean(off);
  CHECK(on.backfilled > 0);
  CHECK(off.backfilled == 0);
  CHECK(on.mean_wait_s <= off.mean_wait_s);
}

TEST_CASE("sim: fair share splits a contended cluster evenly between equal users") {
  for (uint64_t seed : {1, 2}) {
    CAPTURE(seed);
    const double ratio = ShareRatio(1, 1, seed);
    CAPTURE(ratio);
    CHECK(ratio >= 0.75);
    CHECK(ratio <= 1.33);
  }
}

TEST_CASE("sim: fair share gives a user with twice the weight about twice the cluster") {
  for (uint64_t seed : {1, 2}) {
    CAPTURE(seed);
    const double ratio = ShareRatio(2, 1, seed);
    CAPTURE(ratio);
    CHECK(ratio >= 1.5);
    CHECK(ratio <= 2.7);
  }
}
