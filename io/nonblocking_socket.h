// Sockets created non-blocking from the start, for the two places every proxied connection
// passes: accepting the client (accept4 with SOCK_NONBLOCK) and connecting to the backend
// (socket with SOCK_NONBLOCK, connect, and only when that does not complete at once: wait until
// writable, SO_ERROR). Asio's own accept and connect cost each connection an ioctl(FIONBIO) per
// socket, a poll() before reading SO_ERROR and an epoll_ctl(DEL) at close of the accepted
// socket; these do not.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "io/draining_read.h"
#include "io/reactor_op.h"

namespace wsgate::gateway {

inline boost::system::error_code lastSystemError() {
  return {errno, boost::system::system_category()};
}

// Wraps descriptor `fd` (non-blocking, ours alone) in an Asio socket of `io`; on failure the
// descriptor is closed and `ec` set.
inline boost::asio::ip::tcp::socket adoptSocket(boost::asio::io_context& io,
                                                const boost::asio::ip::tcp& protocol, int fd,
                                                boost::system::error_code& ec) {
  boost::asio::ip::tcp::socket socket(io);
  socket.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    return socket;
  }
  reactor::adoptedNonBlocking(socket);
  reactor::keepStatesTogether(socket);
  return socket;
}

// Accepts one connection on `acceptor`: `handler(error_code, tcp::socket)`, with the peer's
// address written to `peer` (which must outlive the operation). Tried at once, else when the
// listening socket turns readable.
template <typename Handler>
void asyncAcceptNonBlocking(boost::asio::ip::tcp::acceptor& acceptor,
                            boost::asio::ip::tcp::endpoint& peer, Handler handler) {
#if !WSGATE_ASIO_INTERNALS
  acceptor.async_accept(peer, std::move(handler));
#else
  auto perform = [&peer](reactor::socket_type fd, boost::system::error_code& ec,
                         size_t& accepted) {
    for (;;) {
      socklen_t length = static_cast<socklen_t>(peer.capacity());
      const int s = ::accept4(fd, peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (s >= 0) {
        peer.resize(length);
        accepted = static_cast<size_t>(s);
        return reactor::Status::done;
      }
      // A connection reset while queued is not the listener's failure: take the next one.
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return reactor::Status::not_done;
      ec = lastSystemError();
      return reactor::Status::done;
    }
  };
  auto& io = static_cast<boost::asio::io_context&>(boost::asio::query(
      acceptor.get_executor(), boost::asio::execution::context));
  reactor::startRead(
      acceptor, std::move(perform),
      [handler = std::move(handler), &io, &peer](boost::system::error_code ec,
                                                 size_t fd) mutable {
        boost::asio::ip::tcp::socket socket(io);
        if (!ec) socket = adoptSocket(io, peer.protocol(), static_cast<int>(fd), ec);
        handler(ec, std::move(socket));
      });
#endif
}

// Opens a non-blocking socket of `io` in `socket` and connects it to `endpoint` without waiting.
// Returns no error when connected at once (a loopback or nearby backend usually is: the kernel
// completes the TCP handshake inside connect(), where a wait for writability would cost an
// epoll_ctl and a trip through the loop), in_progress when the connection must be awaited with
// awaitConnected, else why it failed. What tells: with `first_bytes`, sending them (a send on
// a connection still being made fails with EAGAIN; `sent` says how many went), which the caller
// would do next anyway; without, a second connect().
inline boost::system::error_code startConnect(boost::asio::io_context& io,
                                              boost::asio::ip::tcp::socket& socket,
                                              const boost::asio::ip::tcp::endpoint& endpoint,
                                              std::string_view first_bytes, size_t& sent) {
  sent = 0;
  const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          IPPROTO_TCP);
  if (fd < 0) return lastSystemError();
  boost::system::error_code ec;
  socket = adoptSocket(io, endpoint.protocol(), fd, ec);
  if (ec) return ec;
  reportBytesLeft(fd);  // without it reads keep Asio's behaviour: one more recv, still correct
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // frames go out as relayed
  // The upgrade request follows the connect at once: the kernel holds back the handshake's last
  // ACK and sends it with the request, one segment instead of two (HAProxy's
  // tcp-smart-connect). Linux leaves this mode again as soon as the connect completes.
  const int off = 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
  // Nothing can arrive before the request is sent: the first read waits for epoll.
  reactor::markDrained(socket);
  const auto* address = endpoint.data();
  const auto length = static_cast<socklen_t>(endpoint.size());
  if (::connect(fd, address, length) != 0 && errno != EINPROGRESS) return lastSystemError();
  if (!first_bytes.empty()) {
    const ssize_t n =
        ::send(fd, first_bytes.data(), first_bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      sent = static_cast<size_t>(n);
      return ec;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return boost::asio::error::in_progress;
    return lastSystemError();
  }
  if (::connect(fd, address, length) == 0 || errno == EISCONN) return ec;
  if (errno == EALREADY || errno == EINPROGRESS) return boost::asio::error::in_progress;
  return lastSystemError();
}

inline boost::system::error_code startConnect(boost::asio::io_context& io,
                                              boost::asio::ip::tcp::socket& socket,
                                              const boost::asio::ip::tcp::endpoint& endpoint) {
  size_t sent = 0;
  return startConnect(io, socket, endpoint, {}, sent);
}

// Waits until a connect that startConnect left in progress ends: no error once connected, else
// why not. Closing `socket` meanwhile (a deadline) aborts the wait.
inline boost::asio::awaitable<boost::system::error_code> awaitConnected(
    boost::asio::ip::tcp::socket& socket) {
  auto [wait_ec] = co_await socket.async_wait(boost::asio::ip::tcp::socket::wait_write,
                                              boost::asio::as_tuple(boost::asio::use_awaitable));
  if (wait_ec) co_return wait_ec;
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
    co_return lastSystemError();
  }
  co_return error == 0 ? boost::system::error_code()
                       : boost::system::error_code(error, boost::system::system_category());
}

}  // namespace wsgate::gateway
