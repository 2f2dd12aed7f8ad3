// The Prometheus text exposition the daemons serve at /metrics: families with HELP and TYPE,
// escaped label values, cumulative histogram buckets with +Inf, _sum and _count.
#include "common/metrics/registry.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

using kiln::metrics::EscapeLabelValue;
using kiln::metrics::FormatSample;
using kiln::metrics::Registry;

TEST_CASE("counters and gauges render one line per series, families sorted by name") {
  Registry r;
  r.DeclareGauge("kiln_nodes", "Nodes by state.");
  r.DeclareCounter("kiln_submits_total", "Jobs submitted.");
  r.Add("kiln_submits_total", {});
  r.Add("kiln_submits_total", {}, 2);
  r.Add("kiln_submits_total", {}, -5);  // counters never go down
  r.Set("kiln_nodes", {{"state", "UP"}}, 3);
  r.Set("kiln_nodes", {{"state", "DOWN"}}, 1);
  CHECK(r.Render() ==
        "# HELP kiln_nodes Nodes by state.\n"
        "# TYPE kiln_nodes gauge\n"
        "kiln_nodes{state=\"DOWN\"} 1\n"
        "kiln_nodes{state=\"UP\"} 3\n"
        "# HELP kiln_submits_total Jobs submitted.\n"
        "# TYPE kiln_submits_total counter\n"
        "kiln_submits_total 3\n");
  r.ClearGauge("kiln_nodes");
  CHECK(r.Render().find("kiln_nodes{") == std::string::npos);
}

TEST_CASE("histograms render cumulative buckets, +Inf, sum and count") {
  Registry r;
  r.DeclareHistogram("kiln_pass_seconds", "Pass time.", {0.01, 0.001, 0.1});
  for (double v : {0.0005, 0.001, 0.05, 3.0}) r.Observe("kiln_pass_seconds", {}, v);
  CHECK(r.Render() ==
        "# HELP kiln_pass_seconds Pass time.\n"
        "# TYPE kiln_pass_seconds histogram\n"
        "kiln_pass_seconds_bucket{le=\"0.001\"} 2\n"
        "kiln_pass_seconds_bucket{le=\"0.01\"} 2\n"
        "kiln_pass_seconds_bucket{le=\"0.1\"} 3\n"
        "kiln_pass_seconds_bucket{le=\"+Inf\"} 4\n"
        "kiln_pass_seconds_sum 3.0515\n"
        "kiln_pass_seconds_count 4\n");
  r.Observe("kiln_pass_seconds", {{"type", "submit"}}, 0.2);
  CHECK(r.Render().find("kiln_pass_seconds_bucket{type=\"submit\",le=\"+Inf\"} 1\n") !=
        std::string::npos);
}

TEST_CASE("label values and help text are escaped, and updates of undeclared or mistyped names "
          "are ignored") {
  CHECK(EscapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  Registry r;
  r.DeclareGauge("g", "line one\nback\\slash");
  r.Set("g", {{"user", "eve\"}\n# TYPE x counter"}}, 1);
  r.Add("g", {}, 1);           // not a counter
  r.Set("undeclared", {}, 1);  // never declared
  const std::string text = r.Render();
  CHECK(text ==
        "# HELP g line one\\nback\\\\slash\n"
        "# TYPE g gauge\n"
        "g{user=\"eve\\\"}\\n# TYPE x counter\"} 1\n");
}

TEST_CASE("sample values: integers plainly, special values by name, fractions in short form") {
  CHECK(FormatSample(3) == "3");
  CHECK(FormatSample(-2) == "-2");
  CHECK(FormatSample(0.25) == "0.25");
  CHECK(FormatSample(1e20) == "1e+20");
  CHECK(FormatSample(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(FormatSample(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(FormatSample(std::nan("")) == "NaN");
}
