// A static cluster: round-robin over its endpoints, each attempt bounded by connect_timeout; on
// failure the next endpoint is tried, up to one attempt per endpoint (safe: nothing has been
// sent yet). Each failed attempt counts in wsgate_upstream_connect_failures_total{cluster}; the
// warnings about them are folded to at most one line per second.
#pragma once

#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "config/config.h"
#include "upstream/failure_log.h"
#include "upstream/upstream.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

class TcpUpstream final : public Upstream {
 public:
  TcpUpstream(WorkerContext& worker, const config::Cluster& cluster);
  boost::asio::awaitable<UpstreamConnection> connect() override;

 private:
  WorkerContext& worker_;
  const config::Cluster& cluster_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  std::vector<std::string> endpoint_texts_;  // as logged, written once
  size_t next_;
  Cell& failures_;
  FailureLog connect_failures_log_;
};

}  // namespace wsgate::gateway
