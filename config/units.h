// Parsing of human-written durations ("500ms", "30s", "5m", "1h"), sizes ("512", "64KiB",
// "1MiB", "1GiB"; also "KB"/"MB" as powers of 1000) and rates (a count or a size per time:
// "100/s", "1MiB/s", "600/m", "20/1s"). Pure functions, no YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace wsgate::config {

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);
std::optional<uint64_t> parseSize(std::string_view text);
// Per second; "N/s", "N/m", "N/h" or "N/<duration>" where N is a count or a size. Zero and
// negative rates are refused (nullopt).
std::optional<double> parseRate(std::string_view text);

}  // namespace wsgate::config
