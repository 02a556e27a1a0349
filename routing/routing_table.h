// One worker's view of one config snapshot: a router per listener and an upstream per cluster.
// Held by shared_ptr: a handshake keeps the table it started with, so a later reload can swap
// the worker's table without touching live connections. Worker-thread only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "io/tls_context.h"
#include "routing/router.h"
#include "upstream/upstream.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

class RoutingTable {
 public:
  RoutingTable(WorkerContext& worker, std::shared_ptr<const config::Config> config,
               std::shared_ptr<const TlsContexts> tls);

  const std::shared_ptr<const config::Config>& config() const { return config_; }
  const Router& router(size_t listener_index) const { return routers_[listener_index]; }
  // Never null for a cluster named by a route (the loader checked every reference).
  Upstream* upstream(const std::string& cluster) const;
  // The listener's TLS, or null for a plain listener.
  const ServerTlsContext* listenerTls(size_t listener_index) const {
    return tls_->listener(listener_index);
  }

 private:
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const TlsContexts> tls_;
  std::vector<Router> routers_;
  std::map<std::string, std::unique_ptr<Upstream>, std::less<>> upstreams_;
};

}  // namespace wsgate::gateway
