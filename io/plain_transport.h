// The plain-TCP (and Unix socket) transport of a Stream (io/stream.h): reads and writes are one
// system call each, straight to the kernel; a read that drains the socket tells Asio's reactor so
// (TCP_INQ, draining_read.h), and the next read waits for epoll's edge without a recv that finds
// nothing. Not thread-safe: a transport lives on its worker's thread.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <span>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "io/draining_read.h"
#include "io/reactor_op.h"
#include "io/socket_calls.h"

namespace wsgate::gateway {

using Socket = boost::asio::generic::stream_protocol::socket;

class PlainTransport {
 public:
  explicit PlainTransport(Socket socket) : socket_(std::move(socket)) {}
  explicit PlainTransport(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  // Reads what is there, or waits for it: `handler(error_code, size_t)`. Tried at
  // once unless the last read drained the socket; then waits for epoll's edge, with no system
  // call (see draining_read.h). Every read takes its bytes off the kernel's queue, so a small
  // receive buffer never fills with bytes already relayed and the peer's window stays open.
  template <typename Handler>
  void asyncReadSome(boost::asio::mutable_buffer buffer, Handler&& handler) {
    asyncDrainingRead(socket_, buffer, std::forward<Handler>(handler));
  }
  // Writes what it can once the stream is writable: `handler(error_code, size_t)`.
  template <typename Buffers, typename Handler>
  void asyncWriteSome(const Buffers& buffers, Handler&& handler) {
    socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }
  // Non-blocking, straight to the kernel (MSG_DONTWAIT: no fcntl/ioctl per session); `ec` is
  // would_block when nothing is ready, eof at end of stream. A read that drains the socket
  // spares the next asyncReadSome its first try.
  size_t readSome(boost::asio::mutable_buffer buffer, boost::system::error_code& ec) {
    return drainingReadNow(socket_, buffer, ec);
  }
  // `more`: the stream is closed right after, so the kernel may keep these bytes for the FIN to
  // ride in the same segment (MSG_MORE; the close pushes them).
  size_t writeSome(std::span<const boost::asio::const_buffer> buffers,
                   boost::system::error_code& ec, bool more = false) {
    const int flags = MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0);
    for (;;) {
      // send() for one buffer, the common case: no msghdr to copy in.
      const ssize_t n =
          buffers.size() == 1
              ? calls::sendBytes(socket_.native_handle(), buffers[0].data(), buffers[0].size(),
                                 flags)
              : sendVector(buffers, flags);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      ec = errnoCode();
      return 0;
    }
  }

  void cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  // Releases the descriptor; the kernel still sends what was written, then FIN.
  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  Socket& socket() { return socket_; }

  // Whether the peer sent bytes nobody read; closing then sends a reset, not a FIN (see
  // lingering_close.h). Always asks the kernel: bytes that came after the last read may not be
  // reported by epoll yet (their event can wait in the same batch as the one being handled).
  bool mayHaveUnread() {
    if (!socket_.is_open()) return false;
    int queued = 0;
    return ::ioctl(socket_.native_handle(), FIONREAD, &queued) != 0 || queued > 0;
  }
  // After a read: whether the peer has ended its side of the connection (or reset it). Free
  // when that read left the socket known drained; otherwise a few reads into `scratch`, whose
  // bytes are dropped: the caller has seen the peer's last frame.
  bool peerEnded(boost::asio::mutable_buffer scratch) {
    if (!socket_.is_open() || reactor::knownDrained(socket_)) return false;
    for (int i = 0; i < 4; ++i) {
      boost::system::error_code ec;
      readSome(scratch, ec);
      if (ec == boost::asio::error::would_block) return false;
      if (ec) return true;  // end of stream, or a reset
    }
    return false;
  }
  // Setting TCP_NODELAY flushes what MSG_MORE held back (tcp(7)); it is already on.
  void push() {
    const int on = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
  // Sends FIN once what was written has gone; the stream can still be read.
  void shutdownSend() {
    boost::system::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
  }

 private:
  ssize_t sendVector(std::span<const boost::asio::const_buffer> buffers, int flags) {
    std::array<iovec, 4> iov{};
    const size_t count = std::min(buffers.size(), iov.size());
    for (size_t i = 0; i < count; ++i) {
      iov[i].iov_base = const_cast<void*>(buffers[i].data());
      iov[i].iov_len = buffers[i].size();
    }
    msghdr message{};
    message.msg_iov = iov.data();
    message.msg_iovlen = count;
    return calls::sendMessage(socket_.native_handle(), &message, flags);
  }

  static boost::system::error_code errnoCode() {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return boost::asio::error::would_block;
    return {errno, boost::system::system_category()};
  }

  Socket socket_;
};

}  // namespace wsgate::gateway
