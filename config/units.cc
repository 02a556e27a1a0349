#include "config/units.h"

#include <charconv>
#include <limits>
#include <string>

namespace wsgate::config {

namespace {

// Splits "64KiB" into 64 and "KiB"; nullopt if there is no leading number.
std::optional<std::pair<uint64_t, std::string_view>> splitNumber(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, text.data() + text.size() - end);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return std::make_pair(value, unit);
}

std::optional<uint64_t> scale(uint64_t value, uint64_t factor) {
  if (factor != 0 && value > std::numeric_limits<uint64_t>::max() / factor) return std::nullopt;
  return value * factor;
}

}  // namespace

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  auto parts = splitNumber(text);
  if (!parts) return std::nullopt;
  const auto [value, unit] = *parts;
  uint64_t factor;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    return std::nullopt;
  }
  auto ms = scale(value, factor);
  if (!ms || *ms > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 1000)) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<int64_t>(*ms));
}

std::optional<uint64_t> parseSize(std::string_view text) {
  auto parts = splitNumber(text);
  if (!parts) return std::nullopt;
  const auto [value, unit] = *parts;
  if (unit.empty() || unit == "B") return value;
  if (unit == "KiB") return scale(value, 1ull << 10);
  if (unit == "MiB") return scale(value, 1ull << 20);
  if (unit == "GiB") return scale(value, 1ull << 30);
  if (unit == "KB") return scale(value, 1000);
  if (unit == "MB") return scale(value, 1000 * 1000);
  if (unit == "GB") return scale(value, 1000 * 1000 * 1000);
  return std::nullopt;
}

std::optional<double> parseRate(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto amount = parseSize(text.substr(0, slash));
  std::string_view per = text.substr(slash + 1);
  if (!amount || *amount == 0) return std::nullopt;
  std::chrono::milliseconds period{0};
  if (per == "s") {
    period = std::chrono::seconds(1);
  } else if (per == "m") {
    period = std::chrono::minutes(1);
  } else if (per == "h") {
    period = std::chrono::hours(1);
  } else if (auto parsed = parseDuration(per)) {
    period = *parsed;
  }
  if (period.count() <= 0) return std::nullopt;
  return static_cast<double>(*amount) * 1000.0 / static_cast<double>(period.count());
}

}  // namespace wsgate::config
