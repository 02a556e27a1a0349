// Accepts client connections on one listening socket of one worker and starts a handshake
// coroutine for each. Every worker has its own socket on the same address (SO_REUSEPORT), so
// the kernel spreads connections and a connection never leaves the worker that accepted it.
// Running out of descriptors pauses accepting briefly instead of spinning.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.h"
#include "routing/routing_table.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

// Opens, binds and listens; SO_REUSEPORT so that each worker can bind the same address.
// Throws boost::system::system_error naming nothing: callers add the listener's name.
boost::asio::ip::tcp::acceptor openAcceptor(boost::asio::io_context& io,
                                            const boost::asio::ip::tcp::endpoint& endpoint);

class Listener {
 public:
  // `table` is the worker's current routing table, read at each accept. `open` counts the
  // listener's open connections across all workers, for its max_connections.
  Listener(WorkerContext& worker, boost::asio::ip::tcp::acceptor acceptor, size_t index,
           const std::shared_ptr<const RoutingTable>& table, std::atomic<uint32_t>& open);
  void start();
  void stop();
  // The listener's place in the config of the worker's current table: a reload may move it.
  // Worker thread, at the moment the table is replaced.
  void setIndex(size_t index) { index_ = index; }
  const std::string& name() const { return name_; }

 private:
  void accept();
  // Over max_connections: a fixed 503 written once, no request read, then closed.
  void refuse(boost::asio::ip::tcp::socket& socket, const std::string& listener);

  WorkerContext& worker_;
  boost::asio::ip::tcp::acceptor acceptor_;
  size_t index_;
  std::string name_;
  const std::shared_ptr<const RoutingTable>& table_;
  boost::asio::steady_timer retry_;
  Cell& accept_failures_;
  std::atomic<uint32_t>& open_;
  Cell* refused_ = nullptr;  // wsgate_handshake_rejections_total{reason="max_connections"}
  boost::asio::ip::tcp::endpoint peer_;  // filled by the one outstanding accept
};

}  // namespace wsgate::gateway
