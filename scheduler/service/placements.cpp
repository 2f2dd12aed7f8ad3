#include "scheduler/service/placements.h"

#include "common/protocol/codec.h"

namespace kiln::service {

using nlohmann::json;

json EncodePlacement(const Placement& p) {
  json j = {{"ranks", p.ranks},
            {"slots", p.slots},
            {"memory", p.memory},
            {"gpu_ids", p.gpu_ids},
            {"resume", {p.resume.first, p.resume.second}},
            {"acknowledged", p.acknowledged},
            {"stop_requested", p.stop_requested},
            {"job_waits_for_exit", p.job_waits_for_exit}};
  if (p.launch) j["launch"] = protocol::BodyOf(*p.launch);
  return j;
}

Result<Placement> DecodePlacement(const json& j) {
  auto bad = [](const std::string& what) {
    return Status::InvalidArgument("stored placement: " + what);
  };
  if (!j.is_object()) return bad("not an object");
  Placement p;
  try {
    p.ranks = j.at("ranks").get<int64_t>();
    p.slots = j.at("slots").get<int64_t>();
    p.memory = j.at("memory").get<int64_t>();
    p.gpu_ids = j.at("gpu_ids").get<std::vector<int>>();
    const json& resume = j.at("resume");
    p.resume = {resume.at(0).get<int64_t>(), resume.at(1).get<int64_t>()};
    p.acknowledged = j.at("acknowledged").get<bool>();
    p.stop_requested = j.at("stop_requested").get<bool>();
    p.job_waits_for_exit = j.value("job_waits_for_exit", false);
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  if (j.contains("launch")) {
    protocol::Envelope e = protocol::MakeEnvelope(protocol::LaunchJob{});
    e.body = j["launch"];
    auto launch = protocol::DecodeBody<protocol::LaunchJob>(e);
    if (!launch.ok()) return bad(launch.status().message());
    p.launch = std::move(launch).value();
  }
  return p;
}

Status PlacementTable::Load() {
  auto rows = store_.ListPlacements();
  if (!rows.ok()) return rows.status();
  nodes_.clear();
  for (const auto& row : *rows) {
    auto placement = DecodePlacement(row.state);
    if (!placement.ok()) {
      return Status::IoError("job " + std::to_string(row.job_id) + " attempt " +
                             std::to_string(row.attempt) + " on " + row.node + ": " +
                             placement.status().message());
    }
    nodes_[row.node][{row.job_id, row.attempt}] = std::move(placement).value();
  }
  return Status::Ok();
}

const PlacementTable::OnNode& PlacementTable::On(const std::string& node) const {
  static const OnNode kNone;
  auto it = nodes_.find(node);
  return it == nodes_.end() ? kNone : it->second;
}

const Placement* PlacementTable::Find(const std::string& node, const AttemptKey& key) const {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return nullptr;
  auto p = it->second.find(key);
  return p == it->second.end() ? nullptr : &p->second;
}

Placement* PlacementTable::FindMutable(const std::string& node, const AttemptKey& key) {
  return const_cast<Placement*>(Find(node, key));
}

Status PlacementTable::Save(const std::string& node, const AttemptKey& key,
                            const Placement& placement) {
  return store_.SavePlacement({key.first, key.second, node, EncodePlacement(placement)});
}

Status PlacementTable::Put(const std::string& node, const AttemptKey& key,
                           const Placement& placement) {
  KILN_RETURN_IF_ERROR(Save(node, key, placement));
  nodes_[node][key] = placement;
  return Status::Ok();
}

Status PlacementTable::SetFlag(const std::string& node, const AttemptKey& key,
                               bool Placement::*flag) {
  Placement* p = FindMutable(node, key);
  if (p == nullptr || p->*flag) return Status::Ok();
  Placement changed = *p;
  changed.*flag = true;
  KILN_RETURN_IF_ERROR(Save(node, key, changed));
  p->*flag = true;
  return Status::Ok();
}

Status PlacementTable::Acknowledge(const std::string& node, const AttemptKey& key) {
  return SetFlag(node, key, &Placement::acknowledged);
}

Status PlacementTable::RequestStop(const std::string& node, const AttemptKey& key) {
  return SetFlag(node, key, &Placement::stop_requested);
}

Status PlacementTable::SetJobWaitsForExit(const std::string& node, const AttemptKey& key) {
  return SetFlag(node, key, &Placement::job_waits_for_exit);
}

Result<std::optional<Placement>> PlacementTable::Erase(const std::string& node,
                                                       const AttemptKey& key) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.count(key) == 0) return std::optional<Placement>();
  KILN_RETURN_IF_ERROR(store_.DeletePlacement(key.first, key.second, node));
  std::optional<Placement> removed = std::move(it->second.at(key));
  it->second.erase(key);
  if (it->second.empty()) nodes_.erase(it);
  return removed;
}

Result<PlacementTable::OnNode> PlacementTable::EraseNode(const std::string& node) {
  KILN_RETURN_IF_ERROR(store_.DeletePlacementsOn(node));
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return OnNode();
  OnNode removed = std::move(it->second);
  nodes_.erase(it);
  return removed;
}

void PlacementTable::NoteLaunchSent(const std::string& node, const AttemptKey& key, Millis now) {
  if (Placement* p = FindMutable(node, key)) {
    p->launch_sent_at = now;
    ++p->launch_sends;
  }
}

}  // namespace kiln::service
