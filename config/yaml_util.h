// Helpers for reading typed values out of YAML nodes with diagnostics; shared by the loader and
// by each filter's config parser so that they report errors the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"

namespace wsgate::config {

// Reports every key of map `node` that is not in `known` as an error (with a "did you mean"
// hint when one is close). Returns false if `node` is not a map.
bool checkKeys(const YAML::Node& node, const std::string& path,
               std::initializer_list<std::string_view> known, Diagnostics& diags);

std::optional<std::string> readString(const YAML::Node& node, const std::string& path,
                                      Diagnostics& diags);
std::optional<bool> readBool(const YAML::Node& node, const std::string& path, Diagnostics& diags);
std::optional<uint64_t> readSize(const YAML::Node& node, const std::string& path,
                                 Diagnostics& diags);
std::optional<std::chrono::milliseconds> readDuration(const YAML::Node& node,
                                                      const std::string& path, Diagnostics& diags);
// A rate per second ("100/s", "1MiB/s"; see units.h).
std::optional<double> readRate(const YAML::Node& node, const std::string& path,
                               Diagnostics& diags);
// The list under required key `key` of map `node`, which must not be empty (`what` names its
// items in the error).
std::optional<YAML::Node> readNonEmptyList(const YAML::Node& node, const std::string& key,
                                           const std::string& path, std::string_view what,
                                           Diagnostics& diags);
// Integer within [min, max].
std::optional<int64_t> readInt(const YAML::Node& node, const std::string& path, int64_t min,
                               int64_t max, Diagnostics& diags);

}  // namespace wsgate::config
