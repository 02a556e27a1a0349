#include "proxy/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <span>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/socket_base.hpp>
#include <spdlog/spdlog.h>

#include "proxy/client_handshake.h"
#include "io/draining_read.h"
#include "io/nonblocking_socket.h"

namespace wsgate::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;

tcp::acceptor openAcceptor(asio::io_context& io, const tcp::endpoint& endpoint) {
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  acceptor.set_option(ReusePort(true));
  if (endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true));
  // Accepted sockets inherit TCP_NODELAY from the listening socket (Linux clones the listener's
  // TCP state): no setsockopt per connection.
  acceptor.set_option(tcp::no_delay(true));
  // Inherited the same way: reads learn whether they drained the socket (draining_read.h).
  if (!reportBytesLeft(acceptor.native_handle())) {
    spdlog::debug("TCP_INQ unavailable: relay reads use one more recv per wake-up");
  }
  // Accept a connection once its first bytes are there (as nginx's `deferred`): the request head
  // is read in the same wake-up as the accept, without a recv that finds nothing. A client that
  // sends nothing reaches accept after about a second anyway (the kernel's retried SYN-ACK), and
  // request_timeout applies from there.
  const int defer_seconds = 1;
  if (::setsockopt(acceptor.native_handle(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds,
                   sizeof defer_seconds) != 0) {
    spdlog::debug("TCP_DEFER_ACCEPT unavailable: accepts do not wait for the first bytes");
  }
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor;
}

Listener::Listener(WorkerContext& worker, tcp::acceptor acceptor, size_t index,
                   const std::shared_ptr<const RoutingTable>& table, std::atomic<uint32_t>& open)
    : worker_(worker), acceptor_(std::move(acceptor)), index_(index),
      name_(table->config()->listeners[index].name), table_(table),
      retry_(worker.io),
      accept_failures_(worker.stats.cell(Metric::kAcceptFailures,
                                         {table->config()->listeners[index].name})),
      open_(open) {}

void Listener::start() { accept(); }

void Listener::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
}

void Listener::accept() {
  // The peer's address comes with the accept: no getpeername() per connection.
  asyncAcceptNonBlocking(acceptor_, peer_, [this](const boost::system::error_code& ec,
                                                  tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Typically EMFILE/ENFILE: back off so the loop does not spin, then try again. The
      // connections wait in the kernel's backlog meanwhile.
      accept_failures_.add(1);
      spdlog::warn("listener {}: accept failed: {}; pausing accepts for 100ms",
                   table_->config()->listeners[index_].name, ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](const boost::system::error_code& wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    const config::Listener& listener = table_->config()->listeners[index_];
    ListenerSlot slot;
    if (listener.max_connections > 0) {
      slot = ListenerSlot::take(open_, listener.max_connections);
      if (!slot) {
        refuse(socket, listener.name);
        accept();
        return;
      }
    }
    asio::co_spawn(worker_.io,
                   serveClient(worker_, table_, index_, std::move(socket), peer_,
                               std::move(slot)),
                   [](std::exception_ptr error) {
                     if (!error) return;
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("connection handler failed: {}", e.what());
                     } catch (...) {
                       spdlog::error("connection handler failed: unknown exception");
                     }
                   });
    accept();
  });
}

void Listener::refuse(tcp::socket& socket, const std::string& listener) {
  // Found on the first refusal: a listener that never refuses shows no such series.
  if (!refused_) {
    refused_ = &worker_.stats.cell(Metric::kHandshakeRejections, {listener, "max_connections"});
  }
  refused_->add(1);
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("listener {}: max_connections reached, refused {}", listener,
                  peer_.address().to_string());
  }
  // A plain answer means nothing to a TLS client, which just sees the connection closed.
  if (!table_->listenerTls(index_)) {
    static constexpr std::string_view kAnswer =
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
        "Content-Type: text/plain\r\nContent-Length: 21\r\n\r\ntoo many connections\n";
    const int fd = socket.native_handle();
    // Whatever the client sent already is read and dropped first (with deferred accepts, its
    // request head): closing over unread bytes would send a reset that may destroy the answer.
    // Nothing is waited for; a request still on its way may still meet a reset.
    const std::span<uint8_t> sink = worker_.read_buffer;
    [[maybe_unused]] const ssize_t ignored_read =
        ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
    [[maybe_unused]] const ssize_t ignored_send =
        ::send(fd, kAnswer.data(), kAnswer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace wsgate::gateway
