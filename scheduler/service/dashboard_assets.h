// The dashboard's own files (scheduler/dashboard/), built into kiln-scheduler by
// scheduler/dashboard/embed.cmake. Chart.js is not among them: the HTTP server reads Debian's
// copy (libjs-chart.js) from kChartJsPath.
#pragma once

#include <string>

namespace kiln::service {

constexpr const char* kChartJsPath = "/usr/share/javascript/chart.js/chart.min.js";

struct DashboardAsset {
  const char* path;  // "/index.html"
  const char* content_type;
  const char* body;
};

// The asset served at `path` ("/" is /index.html), or nullptr.
const DashboardAsset* FindDashboardAsset(const std::string& path);

}  // namespace kiln::service
