#include "gateway/tcp_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

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
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
    const tcp::endpoint& endpoint = endpoints_[next_++ % endpoints_.size()];
    result.endpoint = cluster_.endpoints[(next_ - 1) % endpoints_.size()].text();
    tcp::socket socket(worker_.io);
    asio::steady_timer timer(worker_.io, cluster_.connect_timeout);
    auto outcome = co_await (socket.async_connect(endpoint, token) || timer.async_wait(token));
    boost::system::error_code ec;
    if (outcome.index() == 0) {
      ec = std::get<0>(std::get<0>(outcome));
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
