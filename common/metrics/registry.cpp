#include "common/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kiln::metrics {

namespace {

const char* TypeName(int type) {
  switch (type) {
    case 0: return "counter";
    case 1: return "gauge";
    default: return "histogram";
  }
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// {a="x",b="y"} with `extra` (le="...") last; empty when there are no labels at all.
std::string LabelText(const Labels& labels, const std::string& extra = "") {
  if (labels.empty() && extra.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ",";
    out += name + "=\"" + EscapeLabelValue(value) + "\"";
  }
  if (!extra.empty()) out += (out.size() > 1 ? "," : "") + extra;
  return out + "}";
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string FormatSample(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  // The shortest form that reads back the same.
  for (int precision = 6; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, value);
    if (std::strtod(shorter, nullptr) == value) return shorter;
  }
  return buf;
}

void Registry::Declare(const std::string& name, Type type, const std::string& help,
                       std::vector<double> bounds) {
  if (families_.count(name) != 0) return;
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  families_[name] = Family{type, help, std::move(bounds), {}};
}

void Registry::DeclareCounter(const std::string& name, const std::string& help) {
  Declare(name, Type::kCounter, help, {});
}
void Registry::DeclareGauge(const std::string& name, const std::string& help) {
  Declare(name, Type::kGauge, help, {});
}
void Registry::DeclareHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds) {
  Declare(name, Type::kHistogram, help, std::move(bounds));
}

Registry::Series* Registry::Find(const std::string& name, Type type, const Labels& labels) {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != type) return nullptr;
  Series& s = it->second.series[labels];
  if (type == Type::kHistogram && s.buckets.empty()) {
    s.buckets.assign(it->second.bounds.size(), 0);
  }
  return &s;
}

void Registry::Add(const std::string& counter, const Labels& labels, double delta) {
  if (delta < 0) return;  // counters only go up
  if (Series* s = Find(counter, Type::kCounter, labels)) s->value += delta;
}

void Registry::Set(const std::string& gauge, const Labels& labels, double value) {
  if (Series* s = Find(gauge, Type::kGauge, labels)) s->value = value;
}

void Registry::Observe(const std::string& histogram, const Labels& labels, double value) {
  auto it = families_.find(histogram);
  if (it == families_.end() || it->second.type != Type::kHistogram) return;
  Series* s = Find(histogram, Type::kHistogram, labels);
  const auto& bounds = it->second.bounds;
  const size_t at = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  if (at < bounds.size()) ++s->buckets[at];
  s->sum += value;
  ++s->count;
}

void Registry::ClearGauge(const std::string& gauge) {
  auto it = families_.find(gauge);
  if (it != families_.end() && it->second.type == Type::kGauge) it->second.series.clear();
}

std::string Registry::Render() const {
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " " + EscapeHelp(family.help) + "\n";
    out += "# TYPE " + name + " " + TypeName(static_cast<int>(family.type)) + "\n";
    for (const auto& [labels, s] : family.series) {
      if (family.type != Type::kHistogram) {
        out += name + LabelText(labels) + " " + FormatSample(s.value) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < family.bounds.size(); ++i) {
        cumulative += s.buckets[i];
        out += name + "_bucket" +
               LabelText(labels, "le=\"" + FormatSample(family.bounds[i]) + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + LabelText(labels, "le=\"+Inf\"") + " " +
             std::to_string(s.count) + "\n";
      out += name + "_sum" + LabelText(labels) + " " + FormatSample(s.sum) + "\n";
      out += name + "_count" + LabelText(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace kiln::metrics
