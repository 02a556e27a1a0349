#include "config/config.h"

namespace wsgate::config {

std::string Address::text() const {
  if (!host.empty()) return host + ":" + std::to_string(port) + " (" + ip + ")";
  const bool v6 = ip.find(':') != std::string::npos;
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

const Cluster* Config::findCluster(const std::string& name) const {
  for (const auto& cluster : clusters) {
    if (cluster.name == name) return &cluster;
  }
  return nullptr;
}

}  // namespace wsgate::config
