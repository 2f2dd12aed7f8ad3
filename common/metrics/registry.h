// Counters, gauges and histograms with labels, rendered in Prometheus' text exposition format
// (version 0.0.4). Pure: no clock and no I/O; one thread owns a Registry, updates it and renders
// it (a daemon hands the rendered text to its HTTP thread).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kiln::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;  // name, value; in order

class Registry {
 public:
  // Declares a family once; a name declared twice keeps its first declaration. Names are
  // [a-zA-Z_:][a-zA-Z0-9_:]* (counters end in _total by convention), as are label names.
  void DeclareCounter(const std::string& name, const std::string& help);
  void DeclareGauge(const std::string& name, const std::string& help);
  // `bounds`: the upper bounds of the buckets, increasing; +Inf is added.
  void DeclareHistogram(const std::string& name, const std::string& help,
                        std::vector<double> bounds);

  // Updates a series of a declared family of that type; other calls are ignored.
  void Add(const std::string& counter, const Labels& labels, double delta = 1);
  void Set(const std::string& gauge, const Labels& labels, double value);
  void Observe(const std::string& histogram, const Labels& labels, double value);
  // Drops every series of a gauge family: for gauges refreshed from a snapshot, whose label sets
  // come and go (a user with no jobs left).
  void ClearGauge(const std::string& gauge);

  // The exposition text: families by name, series by labels, each family with HELP and TYPE.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;                  // counter, gauge
    std::vector<uint64_t> buckets;     // histogram: observations <= each bound (not cumulative)
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  void Declare(const std::string& name, Type type, const std::string& help,
               std::vector<double> bounds);
  Series* Find(const std::string& name, Type type, const Labels& labels);

  std::map<std::string, Family> families_;
};

// A label value as the format wants it inside double quotes: \\, \" and \n escaped.
std::string EscapeLabelValue(const std::string& value);
// A sample value: integers without a fraction or exponent, +Inf, -Inf, NaN, else shortest form.
std::string FormatSample(double value);

}  // namespace kiln::metrics
