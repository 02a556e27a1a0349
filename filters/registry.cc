#include "filters/registry.h"

namespace wsgate::filters {

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

bool Registry::add(const std::string& name, FilterBuilder builder) {
  return builders_.emplace(name, std::move(builder)).second;
}

std::shared_ptr<const config::BuiltFilter> Registry::build(const std::string& name,
                                                           const YAML::Node& node,
                                                           const std::string& path,
                                                           config::Diagnostics& diags) const {
  auto it = builders_.find(name);
  if (it == builders_.end()) return nullptr;
  return it->second(node, path, diags);
}

bool Registry::knows(const std::string& name) const { return builders_.count(name) != 0; }

std::string Registry::names() const {
  std::string out;
  for (const auto& [name, builder] : builders_) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace wsgate::filters
