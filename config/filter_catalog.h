// The seam between config loading and filters: the loader hands each `filters:` entry to a
// catalog, which validates it and returns an immutable built filter. Keeps config/ free of
// any dependency on filters/ (filters/registry implements this interface).
#pragma once

#include <memory>
#include <string>

namespace YAML {
class Node;
}

namespace wsgate::config {

class Diagnostics;

// Opaque to config/: the immutable, validated config of one filter on one route.
class BuiltFilter {
 public:
  virtual ~BuiltFilter() = default;
};

class FilterCatalog {
 public:
  virtual ~FilterCatalog() = default;
  // Builds filter `name` from `node` (its YAML value). On error, reports to `diags` with
  // `path` (e.g. "listeners[0].routes[1].filters[0].origin") and returns nullptr.
  virtual std::shared_ptr<const BuiltFilter> build(const std::string& name, const YAML::Node& node,
                                                   const std::string& path,
                                                   Diagnostics& diags) const = 0;
  virtual bool knows(const std::string& name) const = 0;
  // Every name, comma-separated, for "unknown filter" hints.
  virtual std::string names() const = 0;
};

}  // namespace wsgate::config
