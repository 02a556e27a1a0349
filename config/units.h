// Parsing of human-written durations ("500ms", "30s", "5m", "1h") and sizes ("512", "64KiB",
// "1MiB", "1GiB"; also "KB"/"MB" as powers of 1000). Pure functions, no YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace wsgate::config {

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);
std::optional<uint64_t> parseSize(std::string_view text);

}  // namespace wsgate::config
