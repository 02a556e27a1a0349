// The built-in `echo` cluster: an in-process WebSocket server on the far end of a socket pair.
// The gateway talks to it exactly as to a remote backend (same upgrade exchange, same relay,
// same filters and metrics), so it doubles as an end-to-end health check. Echo sessions run as
// coroutines on the worker that owns the client connection.
#pragma once

#include <string>
#include <utility>

#include "upstream/failure_log.h"
#include "upstream/upstream.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

class EchoUpstream final : public Upstream {
 public:
  EchoUpstream(WorkerContext& worker, std::string cluster)
      : worker_(worker), cluster_(std::move(cluster)) {}
  boost::asio::awaitable<UpstreamConnection> connect(std::string_view first_bytes) override;

  // Largest message the echo server takes; bigger ones get close 1009 from it.
  static constexpr size_t kMaxMessage = 64 * 1024 * 1024;

 private:
  WorkerContext& worker_;
  std::string cluster_;
  FailureLog connect_failures_log_;
};

}  // namespace wsgate::gateway
