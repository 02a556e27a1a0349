#include "upstream/tcp_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "io/deadline.h"
#include "io/nonblocking_socket.h"

namespace wsgate::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;

TcpUpstream::TcpUpstream(WorkerContext& worker, const config::Cluster& cluster)
    : worker_(worker),
      cluster_(cluster),
      // Spread workers over the endpoints from the first connection on.
      next_(worker.index),
      failures_(worker.stats.cell(Metric::kUpstreamConnectFailures, {cluster.name})) {
  for (const auto& address : cluster.endpoints) {
    endpoints_.emplace_back(asio::ip::make_address(address.ip), address.port);
    endpoint_texts_.push_back(address.text());
  }
}

asio::awaitable<UpstreamConnection> TcpUpstream::connect() {
  UpstreamConnection result;
  for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
    const size_t index = next_++ % endpoints_.size();
    const tcp::endpoint& endpoint = endpoints_[index];
    result.endpoint = endpoint_texts_[index];
    tcp::socket socket(worker_.io);
    auto ec = startConnect(worker_.io, socket, endpoint);
    bool timed_out = false;
    if (ec == asio::error::in_progress) {  // only a connect that must wait arms a timer
      Deadline deadline(worker_.io);
      deadline.arm(cluster_.connect_timeout, [&socket] {
        boost::system::error_code ignored;
        socket.close(ignored);
      });
      ec = co_await awaitConnected(socket);
      deadline.disarm();
      timed_out = deadline.expired();
    }
    result.timed_out = timed_out;
    if (!timed_out && !ec) {
      result.stream.emplace(std::move(socket));
      co_return result;
    }
    result.error = timed_out ? "connect timed out" : ec.message();
    failures_.add(1);
    if (auto admitted = connect_failures_log_.admit()) {
      spdlog::warn("cluster {}: connect to {} failed: {}{}", cluster_.name, result.endpoint,
                   result.error, admitted->suffix());
    }
  }
  co_return result;
}

}  // namespace wsgate::gateway
