// An asynchronous read that tells Asio's reactor when it drained the socket.
//
// Asio 1.26 and 1.28 (Boost 1.81, 1.83) mark a socket read "exhausted" only at end of stream,
// so after every read they keep the descriptor flagged as possibly readable and the next
// async_read_some first tries a recv that finds nothing: one wasted system call per wake-up of
// every relay flow. A short read alone does not prove the socket drained: a FIN that came with
// the data is still pending, and with edge-triggered epoll no new event would announce it. So
// the read asks the kernel: with TCP_INQ enabled on the socket (listener.cc,
// nonblocking_socket.h), recvmsg reports the bytes left after the read, and non-zero once a FIN
// is pending. Only "0 left" marks the socket drained; then the next read waits for epoll's edge
// instead. Sockets without that report (no TCP_INQ, Unix sockets) keep Asio's behaviour, and so
// does a build without WSGATE_ASIO_INTERNALS (reactor_op.h).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>

#include "io/reactor_op.h"
#include "io/socket_calls.h"

namespace wsgate::gateway {

#ifndef TCP_INQ
#define TCP_INQ 36
#endif
#ifndef TCP_CM_INQ
#define TCP_CM_INQ TCP_INQ
#endif

// One recvmsg (MSG_DONTWAIT | `flags`) into `iov`, retried on EINTR. `left` is what the kernel
// reported still queued after it (TCP_INQ), or -1 when it did not say.
inline ssize_t recvReportingLeft(int fd, iovec* iov, size_t iov_count, int flags, int& left) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = iov_count;
  left = -1;
  for (;;) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t n = calls::recvMessage(fd, &message, MSG_DONTWAIT | flags);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
      if (c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ) {
        std::memcpy(&left, CMSG_DATA(c), sizeof left);
      }
    }
    return n;
  }
}

// What a failed or empty recv means for a read: not_done when nothing was there, eof at end of
// stream, else the error.
inline reactor::Status endOfRead(ssize_t n, bool asked, boost::system::error_code& ec) {
  if (n == 0) {
    if (!asked) return reactor::Status::done;  // nothing asked, nothing known
    ec = boost::asio::error::eof;
    return reactor::Status::done_and_exhausted;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return reactor::Status::not_done;
  ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
  return reactor::Status::done;
}

// One recvmsg into `buffer`: done_and_exhausted when the kernel reports nothing left (or at end
// of stream), done when bytes remain or nothing is known, not_done when nothing was there.
inline reactor::Status readReportingLeft(int fd, boost::asio::mutable_buffer buffer,
                                         boost::system::error_code& ec, size_t& transferred) {
  iovec iov{buffer.data(), buffer.size()};
  int left = -1;
  const ssize_t n = recvReportingLeft(fd, &iov, 1, 0, left);
  if (n <= 0) return endOfRead(n, buffer.size() != 0, ec);
  transferred = static_cast<size_t>(n);
  return left == 0 ? reactor::Status::done_and_exhausted : reactor::Status::done;
}

// Reads with `perform` (a reactor::Op perform: one non-blocking attempt) once the socket has
// bytes: `handler(error_code, size_t)`. At most one outstanding per socket.
template <typename Socket, typename Perform, typename Handler>
void asyncReadWith(Socket& socket, Perform perform, Handler handler) {
  reactor::startRead(socket, std::move(perform), std::move(handler));
}

// Reads into `buffer` once the socket has bytes: `handler(error_code, size_t)`, eof at end of
// stream. Like socket.async_read_some, at most one outstanding per socket.
template <typename Socket, typename Handler>
void asyncDrainingRead(Socket& socket, boost::asio::mutable_buffer buffer, Handler handler) {
#if !WSGATE_ASIO_INTERNALS
  socket.async_read_some(buffer, std::move(handler));
#else
  auto perform = [buffer](reactor::socket_type fd, boost::system::error_code& ec,
                          size_t& transferred) {
    return readReportingLeft(fd, buffer, ec, transferred);
  };
  asyncReadWith(socket, std::move(perform), std::move(handler));
#endif
}

// One attempt with `perform` now, without waiting: would_block when nothing is there. When that
// read drained the socket, the next asynchronous read waits for epoll without trying first.
template <typename Socket, typename Perform>
size_t readNowWith(Socket& socket, Perform&& perform, boost::system::error_code& ec) {
  size_t transferred = 0;
  const reactor::Status status = perform(socket.native_handle(), ec, transferred);
  if (status == reactor::Status::not_done) {
    ec = boost::asio::error::would_block;
    reactor::markDrained(socket);
  } else if (status == reactor::Status::done_and_exhausted && !ec) {
    reactor::markDrained(socket);
  }
  return transferred;
}

// Reads what is there now into `buffer`, without waiting (see readNowWith).
template <typename Socket>
size_t drainingReadNow(Socket& socket, boost::asio::mutable_buffer buffer,
                       boost::system::error_code& ec) {
  return readNowWith(
      socket,
      [buffer](reactor::socket_type fd, boost::system::error_code& error, size_t& transferred) {
        return readReportingLeft(fd, buffer, error, transferred);
      },
      ec);
}

// Asks the kernel to report, with every read, how many bytes are left (see above); false on a
// kernel without TCP_INQ (reads then keep Asio's behaviour). Accepted sockets inherit it from
// their listening socket.
inline bool reportBytesLeft(int fd) {
  const int on = 1;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &on, sizeof on) == 0;
}

}  // namespace wsgate::gateway
