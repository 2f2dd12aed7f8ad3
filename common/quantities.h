// Human quantities in job specs and flags: durations ("90s", "1h30m", "2d", or a number of
// seconds) and sizes ("512MiB", "4G", "1.5GiB", or a number of bytes). Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kiln {

// Seconds. Units: s, m, h, d, combinable in descending order ("1h30m"). nullopt if malformed.
std::optional<int64_t> ParseDuration(const std::string& text);
// Bytes. Units: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB, all powers of 1024. nullopt if malformed.
std::optional<int64_t> ParseSize(const std::string& text);
std::string FormatDuration(int64_t seconds);  // "1h30m", "45s"
// Bytes in the same powers of 1024 that ParseSize reads, one decimal: "15.6 GiB", "512.0 MiB",
// "900 B". For memory everywhere kiln shows it (worker logs, kiln nodes), so the two agree.
std::string FormatSize(int64_t bytes);

}  // namespace kiln
