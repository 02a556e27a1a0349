// Builds filters by name from YAML. Each built-in filter registers itself in its own .cc file
// with one WSGATE_REGISTER_FILTER line; adding a filter touches no other file.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/filter_catalog.h"
#include "filters/filter.h"

namespace wsgate::filters {

// Validates `node` and returns the filter's immutable config, or reports to `diags` (with
// `path`) and returns nullptr.
using FilterBuilder = std::function<std::shared_ptr<const FilterFactory>(
    const YAML::Node& node, const std::string& path, config::Diagnostics& diags)>;

class Registry final : public config::FilterCatalog {
 public:
  static Registry& global();

  bool add(const std::string& name, FilterBuilder builder);

  std::shared_ptr<const config::BuiltFilter> build(const std::string& name,
                                                   const YAML::Node& node,
                                                   const std::string& path,
                                                   config::Diagnostics& diags) const override;
  bool knows(const std::string& name) const override;
  std::string names() const override;  // "message_size, origin"

 private:
  std::map<std::string, FilterBuilder> builders_;
};

}  // namespace wsgate::filters

#define WSGATE_REGISTER_FILTER(name, builder)                                           \
  [[maybe_unused]] static const bool wsgate_filter_registered_##builder =              \
      ::wsgate::filters::Registry::global().add(name, builder)
