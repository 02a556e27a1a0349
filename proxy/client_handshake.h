// The opening handshake of one client connection, from the first byte to the relay: read the
// request head (bounded, under request_timeout), validate it (RFC 6455 §4.2.1), route it, run
// the route's handshake filters, connect upstream, forward the upgrade, check the backend's
// answer, answer the client, then hand both streams to a Session. Every refusal is a complete
// HTTP response with `Connection: close`, counted in wsgate_handshake_rejections_total.
#pragma once

#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/connection_record.h"
#include "routing/routing_table.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

boost::asio::awaitable<void> serveClient(WorkerContext& worker,
                                         std::shared_ptr<const RoutingTable> table,
                                         size_t listener_index,
                                         boost::asio::ip::tcp::socket socket,
                                         boost::asio::ip::tcp::endpoint peer,
                                         ListenerSlot slot = {});

}  // namespace wsgate::gateway
