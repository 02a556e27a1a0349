// A static cluster: round-robin over its endpoints, each attempt bounded by connect_timeout; on
// failure the next endpoint is tried, up to one attempt per endpoint (safe: nothing has been
// sent yet). Each failed attempt counts in wsgate_upstream_connect_failures_total{cluster}; the
// warnings about them are folded to at most one line per second. A TLS cluster's handshake
// (verification included) is part of the attempt and shares its connect_timeout; its failures
// count in wsgate_upstream_tls_failures_total{cluster,reason}.
#pragma once

#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "config/config.h"
#include "io/deadline.h"
#include "io/tls_context.h"
#include "upstream/failure_log.h"
#include "upstream/upstream.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

class TcpUpstream final : public Upstream {
 public:
  // `tls`: the cluster's TLS (outlives this), or null for plain TCP.
  TcpUpstream(WorkerContext& worker, const config::Cluster& cluster, const ClientTlsContext* tls);
  boost::asio::awaitable<UpstreamConnection> connect(std::string_view first_bytes) override;

 private:
  // The TLS handshake on a connected socket, bounded by the attempt's `deadline` (armed); on
  // failure counts it, logs it and sets `result`'s flags.
  boost::asio::awaitable<std::optional<Stream>> handshake(boost::asio::ip::tcp::socket socket,
                                                          std::string_view host,
                                                          Deadline& deadline,
                                                          UpstreamConnection& result);

  // Counts a failed attempt and logs `why` (folded).
  void attemptFailed(std::string_view endpoint, std::string_view why);

  WorkerContext& worker_;
  const config::Cluster& cluster_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  std::vector<std::string> endpoint_texts_;  // as logged, written once
  size_t next_;
  Cell& failures_;
  FailureLog connect_failures_log_;
  const ClientTlsContext* tls_;
};

}  // namespace wsgate::gateway
