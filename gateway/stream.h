// One side of a session: a connected byte stream used reactively (wait until readable, then a
// non-blocking read into the worker's buffer), so an idle stream holds no I/O buffer. Plain TCP
// and Unix sockets today; TLS plugs in here (wait/read/write become SSL-aware) without changing
// the session. Not thread-safe: a stream lives on its worker's thread.
#pragma once

#include <cstddef>
#include <utility>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

namespace wsgate::gateway {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

class Stream {
 public:
  explicit Stream(Socket socket) : socket_(std::move(socket)) {}
  explicit Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  // Async stream concept, for the HTTP handshake phase (Beast reads/writes through these).
  using executor_type = Socket::executor_type;
  executor_type get_executor() { return socket_.get_executor(); }
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return socket_.async_write_some(buffers, std::forward<Token>(token));
  }

  // Relay phase. `handler(error_code)` runs once a read may make progress.
  template <typename Handler>
  void waitReadable(Handler&& handler) {
    socket_.async_wait(Socket::wait_read, std::forward<Handler>(handler));
  }
  // Writes what it can once the stream is writable: `handler(error_code, size_t)`.
  template <typename Buffers, typename Handler>
  void asyncWriteSome(const Buffers& buffers, Handler&& handler) {
    socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }
  // Non-blocking; `ec` is would_block when nothing is ready, eof at end of stream.
  template <typename Buffers>
  size_t readSome(const Buffers& buffers, boost::system::error_code& ec) {
    return socket_.read_some(buffers, ec);
  }
  template <typename Buffers>
  size_t writeSome(const Buffers& buffers, boost::system::error_code& ec) {
    return socket_.write_some(buffers, ec);
  }

  // Switches to non-blocking I/O for the relay phase.
  void setNonBlocking(boost::system::error_code& ec) { socket_.non_blocking(true, ec); }
  void cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  // Sends FIN after everything written so far, then releases the descriptor.
  void close() {
    boost::system::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
    socket_.close(ignored);
  }
  bool isOpen() const { return socket_.is_open(); }
  Socket& socket() { return socket_; }

 private:
  Socket socket_;
};

}  // namespace wsgate::gateway
