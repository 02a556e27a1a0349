#include "gateway/tcp_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "gateway/deadline.h"
#include "gateway/nonblocking_socket.h"

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
  }
}

asio::awaitable<UpstreamConnection> TcpUpstream::connect() {
  UpstreamConnection result;
  for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
    const tcp::endpoint& endpoint = endpoints_[next_++ % endpoints_.size()];
    result.endpoint = cluster_.endpoints[(next_ - 1) % endpoints_.size()].text();
    tcp::socket socket(worker_.io);
    Deadline deadline(worker_.io);
    deadline.arm(cluster_.connect_timeout, [&socket] {
      boost::system::error_code ignored;
      socket.close(ignored);
    });
    auto ec = co_await connectNonBlocking(worker_.io, socket, endpoint);
    deadline.disarm();
    if (!deadline.expired()) {
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        result.stream.emplace(std::move(socket));
        result.timed_out = false;
        co_return result;
      }
      result.timed_out = false;
      result.error = ec.message();
    } else {
      result.timed_out = true;
      result.error = "connect timed out";
    }
    failures_.add(1);
    spdlog::warn("cluster {}: connect to {} failed: {}", cluster_.name, result.endpoint,
                 result.error);
  }
  co_return result;
}

}  // namespace wsgate::gateway
