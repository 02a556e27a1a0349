#include "config/yaml_util.h"

#include <algorithm>
#include <charconv>
#include <vector>

#include "config/units.h"

namespace wsgate::config {

namespace {

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string scalarText(const YAML::Node& node) {
  return node.IsScalar() ? node.Scalar() : std::string("(not a scalar)");
}

}  // namespace

bool checkKeys(const YAML::Node& node, const std::string& path,
               std::initializer_list<std::string_view> known, Diagnostics& diags) {
  if (!node.IsMap()) {
    diags.error(node, path.empty() ? "(root)" : path, "must be a map");
    return false;
  }
  for (const auto& entry : node) {
    const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "";
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string_view best;
    size_t best_distance = 3;
    for (std::string_view candidate : known) {
      const size_t d = editDistance(key, candidate);
      if (d < best_distance) {
        best_distance = d;
        best = candidate;
      }
    }
    std::string message = "unknown key \"" + key + "\"";
    if (!best.empty()) {
      message += " (did you mean \"" + std::string(best) + "\"?)";
    } else {
      message += " (allowed:";
      for (std::string_view candidate : known) message.append(" ").append(candidate);
      message += ")";
    }
    // An empty or non-scalar key has no name of its own: name the map it is in.
    const std::string where = key.empty() ? (path.empty() ? "(root)" : path)
                                          : (path.empty() ? key : path + "." + key);
    diags.error(entry.first, where, message);
  }
  return true;
}

std::optional<std::string> readString(const YAML::Node& node, const std::string& path,
                                      Diagnostics& diags) {
  if (!node.IsScalar() || node.Scalar().empty()) {
    diags.error(node, path, "must be a non-empty string");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<bool> readBool(const YAML::Node& node, const std::string& path, Diagnostics& diags) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    diags.error(node, path, "must be true or false, not \"" + scalarText(node) + "\"");
    return std::nullopt;
  }
  return value;
}

std::optional<YAML::Node> readNonEmptyList(const YAML::Node& node, const std::string& key,
                                           const std::string& path, std::string_view what,
                                           Diagnostics& diags) {
  YAML::Node list = node[key];
  if (!list) {
    diags.error(node, path, "missing required key \"" + key + "\"");
    return std::nullopt;
  }
  if (!list.IsSequence() || list.size() == 0) {
    diags.error(list, path + "." + key, "must be a non-empty list of " + std::string(what));
    return std::nullopt;
  }
  return list;
}

std::optional<uint64_t> readSize(const YAML::Node& node, const std::string& path,
                                 Diagnostics& diags) {
  std::optional<uint64_t> value;
  if (node.IsScalar()) value = parseSize(node.Scalar());
  if (!value) {
    diags.error(node, path,
                "invalid size \"" + scalarText(node) +
                    "\" (a number with an optional unit: B, KiB, MiB, GiB, KB, MB, GB)");
  }
  return value;
}

std::optional<double> readRate(const YAML::Node& node, const std::string& path,
                               Diagnostics& diags) {
  std::optional<double> value;
  if (node.IsScalar()) value = parseRate(node.Scalar());
  if (!value) {
    diags.error(node, path,
                "invalid rate \"" + scalarText(node) +
                    "\" (a count or size per time, above 0: 100/s, 1MiB/s, 600/m)");
  }
  return value;
}

std::optional<std::chrono::milliseconds> readDuration(const YAML::Node& node,
                                                      const std::string& path,
                                                      Diagnostics& diags) {
  std::optional<std::chrono::milliseconds> value;
  if (node.IsScalar()) value = parseDuration(node.Scalar());
  if (!value) {
    diags.error(node, path,
                "invalid duration \"" + scalarText(node) +
                    "\" (a number with a unit: ms, s, m or h, e.g. 30s)");
  }
  return value;
}

std::optional<int64_t> readInt(const YAML::Node& node, const std::string& path, int64_t min,
                               int64_t max, Diagnostics& diags) {
  int64_t value = 0;
  bool ok = false;
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    ok = ec == std::errc() && end == text.data() + text.size() && !text.empty();
  }
  if (!ok || value < min || value > max) {
    diags.error(node, path,
                "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                    ", not \"" + scalarText(node) + "\"");
    return std::nullopt;
  }
  return value;
}

}  // namespace wsgate::config
