// Builds a registered filter from YAML the way the loader does, for the filters' unit tests:
// the factory (null on error) and the formatted errors, at path "f.<name>" of "f.yaml".
#pragma once

#include <memory>
#include <string>

#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/filter.h"
#include "filters/registry.h"

namespace wsgate::filters {

struct Built {
  std::shared_ptr<const FilterFactory> factory;
  std::string errors;
};

inline Built buildFilter(const std::string& name, const std::string& yaml) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build(name, YAML::Load(yaml), "f." + name, diags);
  return {std::static_pointer_cast<const FilterFactory>(built), diags.format()};
}

}  // namespace wsgate::filters
