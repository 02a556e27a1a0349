// An asynchronous read that tells Asio's reactor when it drained the socket.
//
// Asio 1.26 (Boost 1.81) marks a socket read "exhausted" only at end of stream, so after every
// read it keeps the descriptor flagged as possibly readable and the next async_read_some first
// tries a recv that finds nothing: one wasted system call per wake-up of every relay flow. This
// read reports `done_and_exhausted` when it returns less than its buffer, so the next read
// waits for epoll's edge instead (a stream socket returns less than asked only when its queue is
// empty). A full buffer still lets the next read be tried at once.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>

#include "gateway/reactor_op.h"

namespace wsgate::gateway {

// Reads into `buffer` once the socket has bytes: `handler(error_code, size_t)`, eof at end of
// stream. Like socket.async_read_some, at most one outstanding per socket.
template <typename Socket, typename Handler>
void asyncDrainingRead(Socket& socket, boost::asio::mutable_buffer buffer, Handler handler) {
  auto perform = [buffer](reactor::socket_type fd, boost::system::error_code& ec,
                          size_t& transferred) {
    for (;;) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n > 0) {
        transferred = static_cast<size_t>(n);
        return transferred < buffer.size() ? reactor::Status::done_and_exhausted
                                           : reactor::Status::done;
      }
      if (n == 0) {
        if (buffer.size() == 0) return reactor::Status::done;  // nothing asked, nothing known
        ec = boost::asio::error::eof;
        return reactor::Status::done_and_exhausted;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return reactor::Status::not_done;
      ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return reactor::Status::done;
    }
  };
  reactor::startRead(socket, std::move(perform), std::move(handler));
}

}  // namespace wsgate::gateway
