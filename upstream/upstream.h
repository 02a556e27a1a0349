// Where a route's connections go: an Upstream opens one byte stream to its cluster, trying the
// cluster's endpoints in turn. One Upstream per cluster per worker (its round-robin position is
// worker-local state); used from the worker's thread only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "io/stream.h"
#include "upstream/failure_log.h"

namespace wsgate::gateway {

// Why an attempt failed is logged where it failed (folded per cluster), not carried here: this
// lives twice in connect()'s coroutine frame, which glibc serves from its per-thread cache only
// while it stays small.
struct UpstreamConnection {
  std::optional<Stream> stream;  // set on success
  bool timed_out = false;        // failure: the last attempt ran out of connect_timeout
  bool tls_failed = false;       // failure: the last attempt's TLS handshake failed
  std::string_view endpoint;     // the endpoint used (or last tried), for logs; lives as long
                                 // as the Upstream
  size_t sent = 0;               // success: bytes of connect()'s `first_bytes` already sent
};

class Upstream {
 public:
  virtual ~Upstream() = default;
  // Opens a stream to the cluster. `first_bytes` (what the caller sends first) may go out as
  // the connection comes up, where that saves a system call; `sent` says how much did.
  virtual boost::asio::awaitable<UpstreamConnection> connect(std::string_view first_bytes) = 0;

  // The handshake's warnings about this cluster's upgrade exchanges (after connect), folded
  // per cluster per worker like the connect failures.
  FailureLog& exchangeFailuresLog() { return exchange_failures_log_; }

 private:
  FailureLog exchange_failures_log_;
};

}  // namespace wsgate::gateway
