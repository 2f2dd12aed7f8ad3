#include <catch2/catch.hpp>

#include "scheduler/core/gang_placement.h"
#include "tests/scheduler/policy_fixtures.h"

using namespace kiln::core;
using namespace kiln::core::testing;

namespace {
int64_t RanksOn(const std::vector<NodeShare>& shares, int32_t node) {
  for (const auto& s : shares) {
    if (s.node == node) return s.ranks;
  }
  return 0;
}
}  // namespace

TEST_CASE("pack puts a gang on the tightest single node that holds it") {
  std::vector<NodeState> nodes = {Node("big", 16), Node("snug", 4), Node("small", 2)};
  FreeCapacity free(nodes);
  auto shares = free.Place(Ranks(3));
  REQUIRE(shares);
  REQUIRE(shares->size() == 1);
  CHECK((*shares)[0].node == 1);
  CHECK((*shares)[0].ranks == 3);
}

TEST_CASE("pack spans the fewest nodes when no single node holds the gang") {
  std::vector<NodeState> nodes = {Node("a", 4), Node("b", 8), Node("c", 4), Node("d", 2)};
  FreeCapacity free(nodes);
  auto shares = free.Place(Ranks(10));
  REQUIRE(shares);
  REQUIRE(shares->size() == 2);  // 8 + 2: two nodes, the remainder on the tightest that holds it
  CHECK(RanksOn(*shares, 1) == 8);
  CHECK(RanksOn(*shares, 3) == 2);
}

TEST_CASE("a gang is placed whole or not at all") {
  std::vector<NodeState> nodes = {Node("a", 4), Node("b", 4)};
  nodes[0].used_slots = 3;
  FreeCapacity free(nodes);
  CHECK_FALSE(free.Place(Ranks(6)));
  CHECK(free.Place(Ranks(5)));
}

TEST_CASE("spread uses one rank per node on as many nodes as possible") {
  std::vector<NodeState> nodes = {Node("a", 4), Node("b", 4), Node("c", 4)};
  ResourceRequest r = Ranks(3);
  r.spread = true;
  FreeCapacity free(nodes);
  auto shares = free.Place(r);
  REQUIRE(shares);
  CHECK(shares->size() == 3);
  r.ranks = 5;  // more ranks than nodes: dealt round-robin
  shares = free.Place(r);
  REQUIRE(shares);
  CHECK(shares->size() == 3);
  int64_t total = 0;
  for (const auto& s : *shares) total += s.ranks;
  CHECK(total == 5);
}

TEST_CASE("ranks_per_node puts exactly that many ranks on each node") {
  std::vector<NodeState> nodes = {Node("a", 8), Node("b", 2), Node("c", 3), Node("d", 2)};
  ResourceRequest r = Ranks(4);
  r.ranks_per_node = 2;
  FreeCapacity free(nodes);
  auto shares = free.Place(r);
  REQUIRE(shares);
  REQUIRE(shares->size() == 2);
  for (const auto& s : *shares) CHECK(s.ranks == 2);
  CHECK(RanksOn(*shares, 0) == 0);  // pack takes the tightest nodes that hold 2, not the big one
}

TEST_CASE("GPUs are assigned by index and never given twice") {
  std::vector<NodeState> nodes = {Node("g", 8, 4)};
  nodes[0].used_gpu_mask = 0b0010;  // GPU 1 is busy
  FreeCapacity free(nodes);
  auto shares = free.Place(Ranks(3, 1));
  REQUIRE(shares);
  free.Take(*shares, Ranks(3, 1));
  CHECK((*shares)[0].gpu_ids == std::vector<int>{0, 2, 3});
  CHECK(free.Free(0).gpus == 0);
  CHECK_FALSE(free.Place(Ranks(1, 1)));
  free.Give(*shares, Ranks(3, 1));
  CHECK(free.Free(0).gpus == 3);
}

TEST_CASE("labels restrict the nodes a job may use") {
  std::vector<NodeState> nodes = {Node("plain", 8), Node("fast", 2, 0, {"ib", "nvme"})};
  ResourceRequest r = Ranks(2);
  r.labels = {"nvme"};
  FreeCapacity free(nodes);
  auto shares = free.Place(r);
  REQUIRE(shares);
  CHECK((*shares)[0].node == 1);
  r.ranks = 3;
  CHECK_FALSE(free.Place(r));
  CHECK(InfeasibleReason(nodes, r)->find("with labels [nvme]") != std::string::npos);
}

TEST_CASE("memory per rank limits how many ranks a node takes") {
  std::vector<NodeState> nodes = {Node("m", 16, 0, {}, 8ll << 30)};
  ResourceRequest r = Ranks(3);
  r.memory_per_rank = 3ll << 30;
  FreeCapacity free(nodes);
  CHECK_FALSE(free.Place(r));  // 9 GiB > 8 GiB
  r.ranks = 2;
  CHECK(free.Place(r));
}

TEST_CASE("a reservation's holdback keeps resources out of a placement") {
  std::vector<NodeState> nodes = {Node("a", 4), Node("b", 4)};
  FreeCapacity free(nodes);
  std::vector<Amount> holdback = {{4, 0, 0}, {1, 0, 0}};
  auto shares = free.Place(Ranks(3), &holdback);
  REQUIRE(shares);
  CHECK((*shares)[0].node == 1);
  CHECK_FALSE(free.Place(Ranks(4), &holdback));
}

TEST_CASE("infeasible reasons name the cause") {
  std::vector<NodeState> nodes = {Node("a", 16, 4), Node("b", 16, 4)};
  ResourceRequest one_node = Ranks(8, 1);
  one_node.ranks_per_node = 8;
  CHECK(*InfeasibleReason(nodes, one_node) ==
        "Infeasible: needs 8 slots, 8 GPUs on one node, largest has 16 slots, 4 GPUs");
  CHECK(InfeasibleReason(nodes, Ranks(8, 8))->find("needs 8 GPUs per rank, largest node has 4") !=
        std::string::npos);
  CHECK(InfeasibleReason(nodes, Ranks(40))->find("together hold 32") != std::string::npos);
  CHECK_FALSE(InfeasibleReason(nodes, Ranks(8, 1)));  // 4 + 4 GPUs across two nodes
  nodes[1].availability = NodeAvailability::kDown;
  CHECK(InfeasibleReason(nodes, Ranks(8, 1)));  // only up nodes count
}

TEST_CASE("a node the others cannot reach takes gangs whole but never shares one") {
  std::vector<NodeState> nodes = {Node("alone", 8), Node("a", 4), Node("b", 4)};
  nodes[0].joins_gangs = false;
  FreeCapacity free(nodes);
  // Whole: the isolated node is the tightest that holds 6 ranks.
  auto whole = free.Place(Ranks(6));
  REQUIRE(whole);
  REQUIRE(whole->size() == 1);
  CHECK((*whole)[0].node == 0);
  // Across nodes: only a and b (8 ranks), never alone + another.
  auto across = free.Place(Ranks(10));
  CHECK_FALSE(across);
  auto eight = free.Place(Ranks(8));
  REQUIRE(eight);
  CHECK(eight->size() == 1);  // alone holds all 8 by itself
  ResourceRequest spread = Ranks(2);
  spread.spread = true;
  auto spread_shares = free.Place(spread);
  REQUIRE(spread_shares);
  CHECK(RanksOn(*spread_shares, 0) == 0);
  CHECK(RanksOn(*spread_shares, 1) + RanksOn(*spread_shares, 2) == 2);
  ResourceRequest per_node = Ranks(4);
  per_node.ranks_per_node = 2;
  auto per_node_shares = free.Place(per_node);
  REQUIRE(per_node_shares);
  CHECK(RanksOn(*per_node_shares, 0) == 0);
}

TEST_CASE("a spread gang on nodes that cannot share one still fits on one of them whole") {
  std::vector<NodeState> nodes = {Node("only", 2)};
  nodes[0].joins_gangs = false;
  FreeCapacity free(nodes);
  ResourceRequest spread = Ranks(2);
  spread.spread = true;
  auto shares = free.Place(spread);
  REQUIRE(shares);
  REQUIRE(shares->size() == 1);
  CHECK((*shares)[0].ranks == 2);
}
