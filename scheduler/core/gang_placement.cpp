#include "scheduler/core/gang_placement.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <tuple>

#include "scheduler/core/accounts.h"

namespace kiln::core {

namespace {

constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

int64_t PerRank(int64_t free, int64_t per_rank) {
  if (per_rank <= 0) return kUnlimited;
  return free <= 0 ? 0 : free / per_rank;
}

std::string Gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ll << 30));
  return buf;
}

std::string JoinLabels(const std::vector<std::string>& labels) {
  std::string out;
  for (const auto& l : labels) out += (out.empty() ? "" : ", ") + l;
  return "[" + out + "]";
}

}  // namespace

FreeCapacity::FreeCapacity(const std::vector<NodeState>& nodes)
    : nodes_(&nodes), free_(nodes.size()) {
  for (int32_t n = 0; n < static_cast<int32_t>(nodes.size()); ++n) {
    const NodeState& node = nodes[n];
    Free_& f = free_[n];
    f.usable = node.availability == NodeAvailability::kUp;
    f.slots = node.slots - node.used_slots;
    f.memory = node.memory_bytes - node.used_memory;
    f.gpu_mask = node.used_gpu_mask;
    f.free_gpus = std::max(0, node.gpus - PopCount(f.gpu_mask));
    if (!f.usable) continue;
    total_free_.slots += std::max<int64_t>(0, f.slots);
    total_free_.gpus += FreeGpus(n);
    total_free_.memory += std::max<int64_t>(0, f.memory);
    Reindex(n);
  }
}

int64_t FreeCapacity::FreeGpus(int32_t n) const { return free_[n].free_gpus; }

Amount FreeCapacity::Free(int32_t n) const {
  if (!free_[n].usable) return {};
  return {std::max<int64_t>(0, free_[n].slots), FreeGpus(n), std::max<int64_t>(0, free_[n].memory)};
}

void FreeCapacity::Unindex(int32_t n) {
  by_slots_.erase({free_[n].slots, n});
  if ((*nodes_)[n].gpus > 0) by_gpus_.erase({FreeGpus(n), n});
}

void FreeCapacity::Reindex(int32_t n) {
  by_slots_.insert({free_[n].slots, n});
  if ((*nodes_)[n].gpus > 0) by_gpus_.insert({FreeGpus(n), n});
}

int64_t FreeCapacity::RanksFit(int32_t n, const ResourceRequest& r, const Amount& held) const {
  const Free_& f = free_[n];
  if (!f.usable) return 0;
  const NodeState& node = (*nodes_)[n];
  if (!r.labels.empty() && !HasAllLabels(node.labels, r.labels)) return 0;
  int64_t fit = PerRank(f.slots - held.slots, std::max<int64_t>(1, r.cpus_per_rank));
  fit = std::min(fit, PerRank(FreeGpus(n) - held.gpus, r.gpus_per_rank));
  fit = std::min(fit, PerRank(f.memory - held.memory, r.memory_per_rank));
  return fit;
}

std::pair<const FreeCapacity::Index*, int64_t> FreeCapacity::IndexFor(
    const ResourceRequest& r) const {
  if (r.gpus_per_rank > 0) return {&by_gpus_, r.gpus_per_rank};
  return {&by_slots_, std::max<int64_t>(1, r.cpus_per_rank)};
}

std::optional<std::vector<NodeShare>> FreeCapacity::Place(
    const ResourceRequest& r, const std::vector<Amount>* holdback) const {
  if (r.ranks <= 0) return std::nullopt;
  // Cheap necessary condition first: most passes over a busy cluster end here.
  if (total_free_.slots < r.Slots() || total_free_.gpus < r.Gpus() ||
      (r.memory_per_rank > 0 && total_free_.memory < r.Memory())) {
    return std::nullopt;
  }
  static const Amount kNone;
  auto cap = [&](int32_t n) {
    return RanksFit(n, r, holdback != nullptr ? (*holdback)[n] : kNone);
  };
  // What node n can take as one of several nodes of the gang.
  auto share_cap = [&](int32_t n) { return (*nodes_)[n].joins_gangs ? cap(n) : 0; };
  const auto index_and_unit = IndexFor(r);  // named, not bound: the lambdas below capture them
  const Index* index = index_and_unit.first;
  const int64_t unit = index_and_unit.second;
  // The tightest node that holds the whole gang.
  auto whole = [&]() -> std::optional<std::vector<NodeShare>> {
    for (auto it = index->lower_bound({r.ranks * unit, -1}); it != index->end(); ++it) {
      if (cap(it->second) >= r.ranks) return std::vector<NodeShare>{{it->second, r.ranks, {}}};
    }
    return std::nullopt;
  };
  std::vector<NodeShare> shares;

  if (r.ranks_per_node > 0) {
    const int64_t k = r.ranks_per_node;
    const int64_t nodes_needed = r.ranks / k;
    auto consider = [&](int32_t n) {
      if ((nodes_needed == 1 ? cap(n) : share_cap(n)) >= k) shares.push_back({n, k, {}});
      return static_cast<int64_t>(shares.size()) == nodes_needed;
    };
    if (r.spread) {
      for (auto it = index->rbegin(); it != index->rend() && it->first >= k * unit; ++it) {
        if (consider(it->second)) return shares;
      }
    } else {
      for (auto it = index->lower_bound({k * unit, -1}); it != index->end(); ++it) {
        if (consider(it->second)) return shares;
      }
    }
    return std::nullopt;
  }

  if (r.spread) {
    std::vector<std::pair<int32_t, int64_t>> open;  // node, ranks it can still take
    int64_t placed = 0;
    for (auto it = index->rbegin(); it != index->rend() && it->first >= unit; ++it) {
      const int64_t c = r.ranks == 1 ? cap(it->second) : share_cap(it->second);
      if (c <= 0) continue;
      shares.push_back({it->second, 1, {}});
      open.push_back({it->second, c - 1});
      if (++placed == r.ranks) return shares;
    }
    // More ranks than nodes: deal the rest round-robin over the nodes chosen.
    bool progress = true;
    while (placed < r.ranks && progress) {
      progress = false;
      for (size_t i = 0; i < open.size() && placed < r.ranks; ++i) {
        if (open[i].second <= 0) continue;
        --open[i].second;
        ++shares[i].ranks;
        ++placed;
        progress = true;
      }
    }
    if (placed == r.ranks) return shares;
    return whole();  // nodes that cannot share a gang may still hold it alone
  }

  // Pack: the tightest single node that holds the whole gang.
  if (auto one = whole()) return one;
  // Else the fewest nodes: largest first.
  int64_t placed = 0;
  for (auto it = index->rbegin(); it != index->rend() && it->first >= unit; ++it) {
    const int64_t c = share_cap(it->second);
    if (c <= 0) continue;
    const int64_t take = std::min(c, r.ranks - placed);
    shares.push_back({it->second, take, {}});
    placed += take;
    if (placed == r.ranks) break;
  }
  if (placed < r.ranks) return std::nullopt;
  // The last share only needs the remainder: move it to the tightest node that holds it.
  const int64_t rest = shares.back().ranks;
  for (auto it = index->lower_bound({rest * unit, -1}); it != index->end(); ++it) {
    const int32_t n = it->second;
    if (n == shares.back().node) break;  // already the tightest
    bool chosen = false;
    for (const auto& s : shares) chosen = chosen || s.node == n;
    if (!chosen && share_cap(n) >= rest) {
      shares.back().node = n;
      break;
    }
  }
  return shares;
}

void FreeCapacity::Take(std::vector<NodeShare>& shares, const ResourceRequest& r) {
  for (auto& s : shares) {
    Unindex(s.node);
    Free_& f = free_[s.node];
    const int64_t gpus_before = FreeGpus(s.node);
    f.slots -= s.ranks * std::max<int64_t>(1, r.cpus_per_rank);
    f.memory -= s.ranks * r.memory_per_rank;
    if (r.gpus_per_rank > 0 && s.gpu_ids.empty()) {
      s.gpu_ids = LowestFreeGpus(f.gpu_mask, (*nodes_)[s.node].gpus, s.ranks * r.gpus_per_rank);
    }
    f.gpu_mask |= GpuMask(s.gpu_ids);
    f.free_gpus = std::max(0, (*nodes_)[s.node].gpus - PopCount(f.gpu_mask));
    if (f.usable) {
      total_free_.slots -= s.ranks * std::max<int64_t>(1, r.cpus_per_rank);
      total_free_.memory -= s.ranks * r.memory_per_rank;
      total_free_.gpus -= gpus_before - FreeGpus(s.node);
    }
    if (f.usable) Reindex(s.node);
  }
}

void FreeCapacity::Give(const std::vector<NodeShare>& shares, const ResourceRequest& r) {
  for (const auto& s : shares) {
    if (s.node < 0 || s.node >= static_cast<int32_t>(free_.size())) continue;
    Free_& f = free_[s.node];
    if (f.usable) Unindex(s.node);
    const int64_t gpus_before = FreeGpus(s.node);
    f.slots += s.ranks * std::max<int64_t>(1, r.cpus_per_rank);
    f.memory += s.ranks * r.memory_per_rank;
    f.gpu_mask &= ~GpuMask(s.gpu_ids);
    f.free_gpus = std::max(0, (*nodes_)[s.node].gpus - PopCount(f.gpu_mask));
    if (f.usable) {
      total_free_.slots += s.ranks * std::max<int64_t>(1, r.cpus_per_rank);
      total_free_.memory += s.ranks * r.memory_per_rank;
      total_free_.gpus += FreeGpus(s.node) - gpus_before;
      Reindex(s.node);
    }
  }
}

std::string DescribeAmount(const Amount& a, bool with_gpus, bool with_memory) {
  std::string s = std::to_string(a.slots) + " slots";
  if (with_gpus) s += ", " + std::to_string(a.gpus) + " GPUs";
  if (with_memory) s += ", " + Gib(a.memory);
  return s;
}

std::string DescribeNeed(const ResourceRequest& r) {
  return std::to_string(r.ranks) + (r.ranks == 1 ? " rank (" : " ranks (") +
         DescribeAmount({r.Slots(), r.Gpus(), r.Memory()}, r.gpus_per_rank > 0,
                        r.memory_per_rank > 0) +
         ")";
}

std::vector<NodeClass> UpNodeClasses(const std::vector<NodeState>& nodes) {
  using Key = std::tuple<int64_t, int64_t, int64_t, const std::vector<std::string>*>;
  auto less = [](const Key& a, const Key& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
    if (std::get<2>(a) != std::get<2>(b)) return std::get<2>(a) < std::get<2>(b);
    return *std::get<3>(a) < *std::get<3>(b);
  };
  std::map<Key, int64_t, decltype(less)> counts(less);
  for (const auto& n : nodes) {
    if (n.availability != NodeAvailability::kUp) continue;
    ++counts[Key{n.slots, n.memory_bytes, n.gpus, &n.labels}];
  }
  std::vector<NodeClass> classes;
  classes.reserve(counts.size());
  for (const auto& [key, count] : counts) {
    classes.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), *std::get<3>(key),
                       count});
  }
  return classes;
}

std::optional<std::string> InfeasibleReason(const std::vector<NodeState>& nodes,
                                            const ResourceRequest& r) {
  return InfeasibleReason(UpNodeClasses(nodes), r);
}

std::optional<std::string> InfeasibleReason(const std::vector<NodeClass>& up_classes,
                                            const ResourceRequest& r) {
  const bool gpus = r.gpus_per_rank > 0, memory = r.memory_per_rank > 0;
  int64_t matching = 0;
  Amount largest;
  int64_t total_ranks = 0, largest_ranks = 0, nodes_holding_k = 0;
  for (const auto& c : up_classes) {
    if (!HasAllLabels(c.labels, r.labels)) continue;
    matching += c.count;
    largest.slots = std::max(largest.slots, c.slots);
    largest.gpus = std::max(largest.gpus, c.gpus);
    largest.memory = std::max(largest.memory, c.memory);
    int64_t fit = PerRank(c.slots, std::max<int64_t>(1, r.cpus_per_rank));
    fit = std::min(fit, PerRank(c.gpus, r.gpus_per_rank));
    fit = std::min(fit, PerRank(c.memory, r.memory_per_rank));
    total_ranks += fit * c.count;
    largest_ranks = std::max(largest_ranks, fit);
    if (r.ranks_per_node > 0 && fit >= r.ranks_per_node) nodes_holding_k += c.count;
  }
  if (up_classes.empty()) return std::nullopt;
  // The admin's labels are named; kiln's account label is not (the service explains accounts).
  std::vector<std::string> visible;
  for (const auto& l : r.labels) {
    if (!IsInternalLabel(l)) visible.push_back(l);
  }
  const bool account = visible.size() < r.labels.size();
  if (matching == 0) {
    bool visible_match = false;
    for (const auto& c : up_classes)
      visible_match = visible_match || HasAllLabels(c.labels, visible);
    if (account && visible_match) {
      return "Account: no up node" +
             std::string(visible.empty() ? "" : " with labels " + JoinLabels(visible)) +
             " can run jobs as the Unix account its user maps to";
    }
    return "Infeasible: no up node has labels " + JoinLabels(visible);
  }
  const std::string per = visible.empty() ? "" : " with labels " + JoinLabels(visible);
  if (std::max<int64_t>(1, r.cpus_per_rank) > largest.slots) {
    return "Infeasible: needs " + std::to_string(r.cpus_per_rank) + " slots per rank, largest node" +
           per + " has " + std::to_string(largest.slots);
  }
  if (r.gpus_per_rank > largest.gpus) {
    return "Infeasible: needs " + std::to_string(r.gpus_per_rank) + " GPUs per rank, largest node" +
           per + " has " + std::to_string(largest.gpus);
  }
  if (r.memory_per_rank > largest.memory) {
    return "Infeasible: needs " + Gib(r.memory_per_rank) + " per rank, largest node" + per +
           " has " + Gib(largest.memory);
  }
  if (r.ranks_per_node > 0) {
    const int64_t k = r.ranks_per_node, nodes_needed = r.ranks / k;
    if (nodes_holding_k >= nodes_needed) return std::nullopt;
    const Amount need{k * std::max<int64_t>(1, r.cpus_per_rank), k * r.gpus_per_rank,
                      k * r.memory_per_rank};
    if (nodes_needed == 1 || nodes_holding_k == 0) {
      return "Infeasible: needs " + DescribeAmount(need, gpus, memory) + " on " +
             (nodes_needed == 1 ? std::string("one node") :
                                  "each of " + std::to_string(nodes_needed) + " nodes") +
             ", largest" + per + " has " + DescribeAmount(largest, gpus, memory);
    }
    return "Infeasible: needs " + DescribeAmount(need, gpus, memory) + " on each of " +
           std::to_string(nodes_needed) + " nodes, only " + std::to_string(nodes_holding_k) +
           " nodes" + per + " are that large";
  }
  if (total_ranks < r.ranks) {
    const std::string holders = matching == 1 ? "the only up node" + per + " holds "
                                              : "all " + std::to_string(matching) + " up nodes" +
                                                    per + " together hold ";
    return "Infeasible: needs " + DescribeNeed(r) + ", " + holders + std::to_string(total_ranks) +
           " such ranks";
  }
  return std::nullopt;
}

}  // namespace kiln::core
