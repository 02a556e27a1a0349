#include "routing/routing_table.h"

#include "upstream/echo_upstream.h"
#include "upstream/tcp_upstream.h"

namespace wsgate::gateway {

RoutingTable::RoutingTable(WorkerContext& worker, std::shared_ptr<const config::Config> config,
                           std::shared_ptr<const TlsContexts> tls)
    : config_(std::move(config)), tls_(std::move(tls)) {
  routers_.reserve(config_->listeners.size());
  for (const auto& listener : config_->listeners) routers_.emplace_back(listener);
  for (const auto& cluster : config_->clusters) {
    std::unique_ptr<Upstream> upstream;
    if (cluster.type == config::Cluster::Type::kEcho) {
      upstream = std::make_unique<EchoUpstream>(worker, cluster.name);
    } else {
      upstream = std::make_unique<TcpUpstream>(worker, cluster, tls_->cluster(cluster.name));
    }
    upstreams_.emplace(cluster.name, std::move(upstream));
  }
}

Upstream* RoutingTable::upstream(const std::string& cluster) const {
  auto it = upstreams_.find(cluster);
  return it == upstreams_.end() ? nullptr : it->second.get();
}

}  // namespace wsgate::gateway
