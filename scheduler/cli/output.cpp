#include "scheduler/cli/output.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <set>
#include <sstream>
#include <vector>

#include "common/clock.h"
#include "common/job_array.h"
#include "common/quantities.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

std::string Str(const json& j, const char* key) {
  if (!j.contains(key)) return "";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string Num(const json& j, const char* key, int precision) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << j[key].get<double>();
  return out.str();
}

// Characters on screen, not bytes: UTF-8 continuation bytes take no column ("×" is two bytes).
size_t DisplayWidth(const std::string& text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

}  // namespace

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) out << std::string(widths[i] - DisplayWidth(row[i]) + 2, ' ');
    }
    out << "\n";
  }
  return out.str();
}

std::string FormatBytes(int64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1);
  if (bytes >= 1'000'000'000) out << bytes / 1e9 << " GB";
  else if (bytes >= 1'000'000) out << bytes / 1e6 << " MB";
  else if (bytes >= 1'000) out << bytes / 1e3 << " kB";
  else return std::to_string(bytes) + " B";
  return out.str();
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::optional<int64_t> ParseSince(const std::string& text, int64_t now_ms) {
  if (auto seconds = ParseDuration(text)) return now_ms - *seconds * 1000;
  for (const char* format : {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                             "%Y-%m-%dT%H:%M"}) {
    std::tm tm{};
    const char* end = strptime(text.c_str(), format, &tm);
    if (end == nullptr || *end != '\0') continue;
    tm.tm_isdst = -1;
    const std::time_t t = std::mktime(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return static_cast<int64_t>(t) * 1000;
  }
  return std::nullopt;
}

std::string FormatProgress(const json& job) {
  const json& m = job.contains("metrics") ? job["metrics"] : json::object();
  std::ostringstream out;
  out << "job " << Str(job, "id") << " " << Str(job, "state");
  if (Str(job, "state") == "PENDING" && !Str(job, "reason").empty()) {
    out << "  " << Str(job, "reason");  // --follow prints each change of why it waits
  }
  if (m.contains("epoch")) out << "  epoch " << Str(m, "epoch") << "/" << Str(m, "epochs");
  if (m.contains("step")) out << "  step " << Str(m, "step") << "/" << Str(m, "total_steps");
  if (m.contains("loss")) out << "  loss " << Num(m, "loss", 4);
  if (m.contains("test_accuracy")) out << "  test_acc " << Num(m, "test_accuracy", 4);
  if (m.contains("samples_per_s")) out << "  " << Num(m, "samples_per_s", 0) << " samples/s";
  return out.str();
}

std::optional<double> EstimateSecondsLeft(int64_t step0, double t0_s, int64_t step, double t_s,
                                          int64_t total_steps) {
  if (step <= step0 || t_s <= t0_s || total_steps <= 0) return std::nullopt;
  const double per_step = (t_s - t0_s) / static_cast<double>(step - step0);
  return per_step * static_cast<double>(std::max<int64_t>(0, total_steps - step));
}

std::string FitToWidth(const std::string& line, size_t columns) {
  size_t width = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (++width > columns) return line.substr(0, i);
  }
  return line;
}

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  char out[32];
  if (s < 60) {
    std::snprintf(out, sizeof out, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(out, sizeof out, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(out, sizeof out, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  }
  return out;
}

std::string FormatProgressBar(const json& job, std::optional<double> eta_s, int bar_width) {
  const json& m = job.contains("metrics") ? job["metrics"] : json::object();
  if (!m.contains("step") || !m.contains("total_steps") || !m["step"].is_number() ||
      !m["total_steps"].is_number() || m["total_steps"].get<double>() <= 0) {
    return FormatProgress(job);
  }
  const double done =
      std::clamp(m["step"].get<double>() / m["total_steps"].get<double>(), 0.0, 1.0);
  const int filled = static_cast<int>(done * bar_width + 0.5);
  std::string line = FormatProgress(job);
  const std::string head = "job " + Str(job, "id") + " " + Str(job, "state");
  std::ostringstream bar;
  bar << head << " [" << std::string(filled, '#') << std::string(bar_width - filled, '.') << "] "
      << static_cast<int>(done * 100) << "%" << line.substr(head.size());
  if (eta_s) bar << "  ETA " << FormatDuration(*eta_s);
  return bar.str();
}

std::string FormatQueue(const json& jobs, bool expand) {
  std::vector<std::vector<std::string>> rows = {{"ID", "NAME", "USER", "PRI", "STATE", "ATTEMPT",
                                                 "RANKS", "NODE", "PROGRESS", "START", "REASON"}};
  for (const auto& j : jobs) {
    const json& m = j.contains("metrics") ? j["metrics"] : json::object();
    std::string progress = m.contains("step") ? Str(m, "step") + "/" + Str(m, "total_steps") : "-";
    std::string state = Str(j, "state");
    if (j.value("held", false) && state == "PENDING") state += " (held)";
    std::vector<std::string> row = {Str(j, "id"),
                                    Str(j, "name"),
                                    Str(j, "user").empty() ? "-" : Str(j, "user"),
                                    j.contains("priority") ? Str(j, "priority") : "0",
                                    state,
                                    Str(j, "attempt"),
                                    Str(j, "ranks"),
                                    Str(j, "node").empty() ? "-" : Str(j, "node"),
                                    progress,
                                    FormatStartEstimate(j, false),
                                    Str(j, "reason")};
    if (j.contains("array_job")) {  // a task of an array: ARRAY_INDEX
      row[0] = TaskName(j.value("array_job", int64_t{0}), j.value("array_index", int64_t{-1}));
    }
    if (j.contains("array") && j["array"].is_object()) {
      // An array's own line stands for its tasks that have not started: 12[40-999].
      const json& a = j["array"];
      const std::string pending = a.value("pending", "");
      const bool finished = state != "PENDING" && state != "PENDING (held)";
      if (!finished && pending.empty()) continue;  // every task is listed on its own
      if (expand && !finished) {
        auto set = IndexSet::Parse(pending);
        for (int64_t index : set.ok() ? set->Expand() : std::vector<int64_t>{}) {
          row[0] = TaskName(j.value("id", int64_t{0}), index);
          row[5] = "0";
          rows.push_back(row);
        }
        continue;
      }
      row[0] += "[" + (finished ? a.value("indices", "") : pending) + "]";
      row[5] = "-";
    }
    rows.push_back(std::move(row));
  }
  return Table(rows);
}

namespace {
// "node-a (GPUs 0,1)", or "a×2, b×2" for a gang on several nodes.
std::string FormatAllocation(const json& j) {
  if (!j.contains("allocation") || !j["allocation"].is_array() || j["allocation"].empty()) {
    return Str(j, "node").empty() ? "-" : Str(j, "node");
  }
  std::string out;
  const json& shares = j["allocation"];
  for (const auto& s : shares) {
    if (!out.empty()) out += ", ";
    out += Str(s, "node");
    if (shares.size() > 1) out += "×" + Str(s, "ranks");
    if (s.contains("gpu_ids") && s["gpu_ids"].is_array() && !s["gpu_ids"].empty()) {
      std::string ids;
      for (const auto& g : s["gpu_ids"]) ids += (ids.empty() ? "" : ",") + g.dump();
      out += " (GPUs " + ids + ")";
    }
  }
  return out;
}
}  // namespace

std::string FormatJob(const json& j) {
  std::ostringstream out;
  out << "Job " << Str(j, "id") << " (" << Str(j, "name") << ")\n"
      << "  state      " << Str(j, "state") << "\n"
      << "  reason     " << Str(j, "reason") << "\n"
      << "  user       " << (Str(j, "user").empty() ? "-" : Str(j, "user")) << ", priority "
      << (j.contains("priority") ? Str(j, "priority") : "0")
      << (j.value("held", false) ? ", held" : "") << "\n";
  if (j.value("time_limit_s", int64_t{0}) > 0) {
    out << "  time limit " << j.value("time_limit_s", int64_t{0}) << " s\n";
  }
  if (j.contains("resumed_from") && j["resumed_from"].is_object()) {
    out << "  resumed from job " << Str(j["resumed_from"], "job_id") << ", checkpoint step "
        << Str(j["resumed_from"], "step") << "\n";
  }
  if (j.contains("depends_on") && !j["depends_on"].empty()) {
    out << "  depends on " << j["depends_on"].dump() << "\n";
  }
  if (j.contains("start_estimate")) out << "  start      " << FormatStartEstimate(j, true) << "\n";
  if (j.contains("array_job")) {
    out << "  array task "
        << TaskName(j.value("array_job", int64_t{0}), j.value("array_index", int64_t{-1}))
        << " (index " << Str(j, "array_index") << " of array " << Str(j, "array_job") << ")\n";
  }
  if (j.contains("array") && j["array"].is_object()) {
    const json& a = j["array"];
    out << "  array      " << Str(a, "tasks") << " tasks [" << Str(a, "indices") << "]";
    if (a.value("max_running", int64_t{0}) > 0)
      out << ", at most " << Str(a, "max_running") << " running";
    out << "\n             " << Str(a, "pending_count") << " not started";
    if (a.contains("states") && a["states"].is_object()) {
      for (auto it = a["states"].begin(); it != a["states"].end(); ++it) {
        out << ", " << it->dump() << " " << it.key();
      }
    }
    if (a.value("cancelled", int64_t{0}) > 0) {
      out << ", " << Str(a, "cancelled") << " dropped by a cancel";
    }
    out << "\n";
  }
  out
      << "  attempt    " << Str(j, "attempt") << " (max retries " << Str(j, "max_retries") << ")\n"
      << "  ranks      " << Str(j, "ranks") << " on " << FormatAllocation(j) << "\n"
      << "  submitted  " << FormatTime(j.value("submitted_at", int64_t{0})) << "\n"
      << "  started    " << FormatTime(j.value("started_at", int64_t{0})) << "\n"
      << "  finished   " << FormatTime(j.value("finished_at", int64_t{0})) << "\n";
  if (j.contains("metrics") && !j["metrics"].empty()) {
    out << "  metrics\n";
    for (auto it = j["metrics"].begin(); it != j["metrics"].end(); ++it) {
      out << "    " << std::left << std::setw(18) << it.key() << " "
          << (it->is_number_float() ? Num(j["metrics"], it.key().c_str(), 4) : it->dump()) << "\n";
    }
  }
  if (j.contains("events")) {
    out << "  events\n";
    for (const auto& e : j["events"]) {
      out << "    " << FormatTime(e.value("time", int64_t{0})) << "  "
          << (Str(e, "from").empty() ? "-" : Str(e, "from")) << " -> " << Str(e, "to") << "  "
          << Str(e, "reason") << "\n";
    }
  }
  if (j.contains("attempts") && !j["attempts"].empty()) {
    out << "  attempts\n";
    std::vector<std::vector<std::string>> rows = {
        {"#", "NODES", "STARTED", "ENDED", "OUTCOME", "EXIT", "FROM STEP", "REASON"}};
    for (const auto& a : j["attempts"]) {
      const int64_t ended = a.value("ended_at", int64_t{0});
      const int64_t exit_code = a.value("exit_code", int64_t{-1});
      const int64_t from = a.value("resumed_from_step", int64_t{-1});
      json shares = {{"allocation", a.value("nodes", json::array())}};
      rows.push_back({Str(a, "attempt"), FormatAllocation(shares),
                      FormatTime(a.value("started_at", int64_t{0})),
                      ended > 0 ? FormatTime(ended) : "-", Str(a, "outcome"),
                      exit_code >= 0 ? std::to_string(exit_code) : "-",
                      from >= 0 ? std::to_string(from) : "-", Str(a, "reason")});
    }
    std::istringstream table(Table(rows));
    for (std::string line; std::getline(table, line);) out << "    " << line << "\n";
  }
  if (j.contains("checkpoints") && !j["checkpoints"].empty()) {
    out << "  checkpoints (" << FormatBytes(j.value("checkpoint_bytes", int64_t{0})) << ")\n";
    std::istringstream table(FormatCheckpoints(j["checkpoints"]));
    for (std::string line; std::getline(table, line);) out << "    " << line << "\n";
  }
  return out.str();
}

std::string FormatNodes(const json& nodes) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "SLOTS", "USED", "GPUS", "USED", "MEMORY", "LABELS", "LAST SEEN"}};
  for (const auto& n : nodes) {
    std::string labels;
    if (n.contains("labels") && n["labels"].is_array()) {
      for (const auto& l : n["labels"]) labels += (labels.empty() ? "" : ",") + l.get<std::string>();
    }
    std::string state = Str(n, "state");
    if (!Str(n, "drain_reason").empty()) state += " (" + Str(n, "drain_reason") + ")";
    rows.push_back({Str(n, "name"), state, Str(n, "slots"), Str(n, "used_slots"), Str(n, "gpus"),
                    n.contains("used_gpus") ? Str(n, "used_gpus") : "0",
                    FormatSize(n.value("memory_bytes", int64_t{0})),
                    labels.empty() ? "-" : labels,
                    FormatTime(n.value("last_seen_at", int64_t{0}))});
  }
  return Table(rows);
}

std::string FormatServices(const json& services) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "OWNER", "STATE", "MODEL", "READY", "REQ/S", "P99", "ENDPOINTS"}};
  std::string notes;
  for (const auto& s : services) {
    std::string state = Str(s, "state");
    if (state == "active" && s.value("rolling", false)) state = "rolling";
    std::string endpoints;
    for (const auto& e : s.value("endpoints", json::array())) {
      if (e.is_string()) endpoints += (endpoints.empty() ? "" : " ") + e.get<std::string>();
    }
    char p99[32];
    std::snprintf(p99, sizeof p99, "%.2f ms", s.value("p99_ms", 0.0));
    char rps[32];
    std::snprintf(rps, sizeof rps, "%.1f", s.value("requests_per_s", 0.0));
    rows.push_back({Str(s, "name"), Str(s, "user"), state, Str(s, "version"),
                    Str(s, "ready") + "/" + Str(s, "replicas"), rps, p99,
                    endpoints.empty() ? "-" : endpoints});
    if (!Str(s, "reason").empty()) notes += Str(s, "name") + ": " + Str(s, "reason") + "\n";
    for (const auto& r : s.value("replica_jobs", json::array())) {
      if (r.value("ready", false)) continue;
      std::string line = Str(s, "name") + ": replica job " + Str(r, "job_id") + " (model " +
                         Str(r, "version") + ") " + Str(r, "state");
      if (r.contains("node")) line += " on " + Str(r, "node");
      line += r.contains("reason") ? ": " + Str(r, "reason") : ", not ready yet";
      notes += line + "\n";
    }
  }
  return Table(rows) + notes;
}

std::string FormatCheckpoints(const json& checkpoints) {
  std::vector<std::vector<std::string>> rows = {
      {"STEP", "EPOCH", "ATTEMPT", "TEST_ACC", "LOSS", "SIZE", "SHA256"}};
  for (const auto& c : checkpoints) {
    const json& m = c.contains("metrics") ? c["metrics"] : json::object();
    rows.push_back({Str(c, "step"), Str(c, "epoch"), Str(c, "attempt"),
                    Num(m, "test_accuracy", 4), Num(m, "loss", 4),
                    FormatBytes(c.value("bytes", int64_t{0})), Str(c, "sha256").substr(0, 16)});
  }
  return Table(rows);
}

std::string Sparkline(const std::vector<double>& values, size_t width) {
  if (values.empty() || width == 0) return "";
  static const char* kBlocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  std::vector<double> cells;
  const size_t n = std::min(width, values.size());
  for (size_t c = 0; c < n; ++c) {
    const size_t from = c * values.size() / n;
    const size_t to = std::max(from + 1, (c + 1) * values.size() / n);
    double sum = 0;
    for (size_t i = from; i < to; ++i) sum += values[i];
    cells.push_back(sum / static_cast<double>(to - from));
  }
  const auto [lo, hi] = std::minmax_element(cells.begin(), cells.end());
  const double span = *hi - *lo;
  std::string out;
  for (double v : cells) {
    const int level = span > 0 ? static_cast<int>((v - *lo) / span * 7.0 + 0.5) : 3;
    out += kBlocks[std::clamp(level, 0, 7)];
  }
  return out;
}

std::string LossSparkline(const json& history, size_t width) {
  if (!history.is_object() || !history.contains("step")) return "";
  std::vector<double> losses;
  int64_t last_step = -1;
  for (const auto& p : history["step"]) {
    if (p.contains("loss") && p["loss"].is_number()) losses.push_back(p["loss"].get<double>());
    if (p.contains("step") && p["step"].is_number_integer()) last_step = p["step"].get<int64_t>();
  }
  // The newest report, when it is newer than the last kept point.
  const json latest = history.contains("latest") ? history["latest"] : json::object();
  if (latest.is_object() && latest.contains("loss") && latest["loss"].is_number() &&
      latest.contains("step") && latest["step"].is_number_integer() &&
      latest["step"].get<int64_t>() > last_step) {
    losses.push_back(latest["loss"].get<double>());
  }
  if (losses.empty()) return "";
  std::ostringstream out;
  out << "loss  " << Sparkline(losses, width) << "  " << Num(json{{"v", losses.front()}}, "v", 4)
      << " -> " << Num(json{{"v", losses.back()}}, "v", 4);
  return out.str();
}

namespace {
// The columns of a series: `first` in that order when present, then the other fields by name.
std::vector<std::string> ColumnsOf(const json& points, const std::vector<std::string>& first) {
  std::set<std::string> seen;
  for (const auto& p : points) {
    for (const auto& [k, v] : p.items()) {
      if (k != "time") seen.insert(k);
    }
  }
  std::vector<std::string> columns;
  for (const auto& f : first) {
    if (seen.erase(f) > 0) columns.push_back(f);
  }
  for (const auto& k : seen) columns.push_back(k);
  return columns;
}

std::string SeriesTable(const json& points, const std::vector<std::string>& first) {
  const auto columns = ColumnsOf(points, first);
  std::vector<std::vector<std::string>> rows;
  rows.emplace_back();
  for (const auto& c : columns) {
    std::string header = c;
    for (auto& ch : header) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    rows.back().push_back(header);
  }
  for (const auto& p : points) {
    rows.emplace_back();
    for (const auto& c : columns) {
      if (!p.contains(c)) {
        rows.back().push_back("-");
      } else if (p[c].is_number_integer()) {
        rows.back().push_back(Str(p, c.c_str()));
      } else {
        const double v = p[c].get<double>();
        rows.back().push_back(Num(p, c.c_str(), std::abs(v) >= 100 ? 0 : 4));
      }
    }
  }
  return Table(rows);
}
}  // namespace

std::string FormatMetricsHistory(const json& history) {
  std::ostringstream out;
  const json& epochs = history.contains("epoch") ? history["epoch"] : json::array();
  const json& steps = history.contains("step") ? history["step"] : json::array();
  if (epochs.empty() && steps.empty()) {
    return "job " + Str(history, "job_id") + " has reported no metrics yet\n";
  }
  if (!epochs.empty()) {
    out << "Epochs:\n" << SeriesTable(epochs, {"attempt", "epoch", "step"});
  }
  if (!steps.empty()) {
    if (!epochs.empty()) out << "\n";
    out << "Training (" << steps.size() << " reports kept, evenly spread over the run):\n"
        << SeriesTable(steps, {"attempt", "epoch", "step", "total_steps", "epochs", "loss",
                               "samples_per_s", "lr"});
    const std::string spark = LossSparkline(history);
    if (!spark.empty()) out << "\n" << spark << "\n";
  }
  return out.str();
}

}  // namespace kiln::cli
