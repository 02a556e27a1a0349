// An asynchronous read that tells Asio's reactor when it drained the socket.
//
// Asio 1.26 (Boost 1.81) marks a socket read "exhausted" only at end of stream, so after every
// read it keeps the descriptor flagged as possibly readable and the next async_read_some first
// tries a recv that finds nothing: one wasted system call per wake-up of every relay flow. This
// read is Asio's own reactor operation with one difference: a read that returns less than its
// buffer reports `done_and_exhausted`, so the next read waits for epoll's edge instead (a
// stream socket returns less than asked only when its queue is empty). A full buffer still lets
// the next read be tried at once. Completion, cancellation and work tracking are Asio's.
//
// It reaches into boost::asio::detail (the reactor and the socket's implementation): pinned to
// the epoll reactor of the Boost that Debian 12 ships; the static_asserts stop a build on
// anything else.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/version.hpp>

namespace wsgate::gateway {

static_assert(BOOST_VERSION / 100 == 1081, "draining_read.h is written against Boost 1.81's Asio");

namespace draining_detail {

namespace ad = boost::asio::detail;
static_assert(std::is_same_v<ad::reactor, ad::epoll_reactor>, "needs Asio's epoll reactor");

template <typename Handler, typename IoExecutor>
class DrainingReadOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(DrainingReadOp);

  DrainingReadOp(const boost::system::error_code& success_ec, ad::socket_type socket,
                 boost::asio::mutable_buffer buffer, Handler& handler, const IoExecutor& io_ex)
      : reactor_op(success_ec, &DrainingReadOp::doPerform, &DrainingReadOp::doComplete),
        socket_(socket),
        buffer_(buffer),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static status doPerform(reactor_op* base) {
    auto* op = static_cast<DrainingReadOp*>(base);
    for (;;) {
      const ssize_t n = ::recv(op->socket_, op->buffer_.data(), op->buffer_.size(), 0);
      if (n > 0) {
        op->bytes_transferred_ = static_cast<size_t>(n);
        return op->bytes_transferred_ < op->buffer_.size() ? done_and_exhausted : done;
      }
      if (n == 0) {
        op->ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      op->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return done;
    }
  }

  // Asio's completion sequence for reactor operations (as in reactive_socket_recv_op).
  static void doComplete(void* owner, ad::operation* base, const boost::system::error_code&,
                         std::size_t) {
    auto* op = static_cast<DrainingReadOp*>(base);
    ptr p = {std::addressof(op->handler_), op, op};
    ad::handler_work<Handler, IoExecutor> work(std::move(op->work_));
    ad::binder2<Handler, boost::system::error_code, std::size_t> handler(
        op->handler_, op->ec_, op->bytes_transferred_);
    p.h = std::addressof(handler.handler_);
    p.reset();
    if (owner) {
      ad::fenced_block block(ad::fenced_block::half);
      work.complete(handler, handler.handler_);
    }
  }

 private:
  ad::socket_type socket_;
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// basic_socket keeps its implementation protected; a member pointer taken through a derived
// class reads it from any socket of that type.
template <typename Socket>
struct ImplementationOf : Socket {
  static auto& get(Socket& socket) {
    return (socket.*(&ImplementationOf::impl_)).get_implementation();
  }
};

}  // namespace draining_detail

// Reads into `buffer` once the socket has bytes: `handler(error_code, size_t)`, eof at end of
// stream. Like socket.async_read_some, at most one outstanding per socket.
template <typename Socket, typename Handler>
void asyncDrainingRead(Socket& socket, boost::asio::mutable_buffer buffer, Handler handler) {
  namespace ad = boost::asio::detail;
  using Executor = typename Socket::executor_type;
  using Op = draining_detail::DrainingReadOp<Handler, Executor>;
  auto& impl = draining_detail::ImplementationOf<Socket>::get(socket);
  auto& reactor = boost::asio::use_service<ad::reactor>(
      boost::asio::query(socket.get_executor(), boost::asio::execution::context));

  typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
  p.p = new (p.v) Op(boost::system::error_code(), impl.socket_, buffer, handler,
                     socket.get_executor());
  if ((impl.state_ & ad::socket_ops::non_blocking) == 0 &&
      !ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
    reactor.post_immediate_completion(p.p, false);
  } else {
    reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p, false, true);
  }
  p.v = p.p = nullptr;
}

}  // namespace wsgate::gateway
