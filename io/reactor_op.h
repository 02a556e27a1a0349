// Socket operations on Asio's own reactor where Asio's stock operations cost extra system calls
// on the hot paths (see draining_read.h and nonblocking_socket.h for what each saves), and the
// socket state that goes with them.
//
// This reaches into boost::asio::detail (the reactor, a socket's implementation), so it is built
// only for the Boosts whose epoll reactor it was checked against (WSGATE_ASIO_INTERNALS, set by
// CMakeLists.txt); the static_asserts stop a build that forces it on anything else. Completion,
// cancellation by close()/cancel() and work tracking stay Asio's. Without it the same calls run
// on Asio's stock operations, which make the system calls these spare.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#if WSGATE_ASIO_INTERNALS
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/query.hpp>
#include <boost/version.hpp>

namespace wsgate::gateway::reactor {

// Asio 1.26 and 1.28: the members used below are the same in both.
static_assert(BOOST_VERSION / 100 == 1081 || BOOST_VERSION / 100 == 1083,
              "reactor_op.h is written against the Asio of Boost 1.81 and 1.83 "
              "(configure with -DWSGATE_ASIO_INTERNALS=OFF)");
namespace ad = boost::asio::detail;
static_assert(std::is_same_v<ad::reactor, ad::epoll_reactor>, "needs Asio's epoll reactor");

using Status = ad::reactor_op::status;
using ad::socket_type;

// `Perform` is `Status(socket_type, error_code&, size_t& result)`: one non-blocking attempt,
// not_done when it would block. `Handler` gets `(error_code, size_t result)`.
template <typename Perform, typename Handler, typename IoExecutor>
class Op : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(Op);

  Op(socket_type socket, Perform perform, Handler& handler, const IoExecutor& io_ex)
      : reactor_op(boost::system::error_code(), &Op::doPerform, &Op::doComplete),
        socket_(socket),
        perform_(std::move(perform)),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

 private:
  static Status doPerform(reactor_op* base) {
    auto* op = static_cast<Op*>(base);
    return op->perform_(op->socket_, op->ec_, op->bytes_transferred_);
  }

  // Asio's completion sequence for reactor operations (as in reactive_socket_recv_op).
  static void doComplete(void* owner, ad::operation* base, const boost::system::error_code&,
                         std::size_t) {
    auto* op = static_cast<Op*>(base);
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

  socket_type socket_;
  Perform perform_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// basic_socket keeps its implementation protected: a member pointer taken through a derived
// class reads it from any socket of that type.
template <typename Socket>
struct ImplementationOf : Socket {
  static auto& get(Socket& socket) {
    return (socket.*(&ImplementationOf::impl_)).get_implementation();
  }
};

// basic_socket_acceptor keeps it private: reactor_op.cc reads it (see there).
using Acceptor = boost::asio::ip::tcp::acceptor;
using AcceptorImpl =
    ad::io_object_impl<ad::reactive_socket_service<boost::asio::ip::tcp>, Acceptor::executor_type>;
AcceptorImpl& acceptorImpl(Acceptor& acceptor);

// Tells the reactor that `socket` has nothing to read, so that its next read waits for epoll's
// edge instead of first trying a recv (for a socket just connected: its peer has not answered).
template <typename Socket>
void markDrained(Socket& socket);

ad::epoll_reactor& reactorOf(ad::epoll_reactor::per_descriptor_data state);

template <>
struct ImplementationOf<Acceptor> {
  static auto& get(Acceptor& acceptor) { return acceptorImpl(acceptor).get_implementation(); }
};

// Starts `perform` on `object` (a socket or an acceptor) as a read-side reactor operation:
// tried at once unless the last read-side operation drained the descriptor, else when epoll
// reports it readable.
template <typename IoObject, typename Perform, typename Handler>
void startRead(IoObject& object, Perform perform, Handler handler) {
  using Executor = typename IoObject::executor_type;
  using ReadOp = Op<Perform, Handler, Executor>;
  auto& impl = ImplementationOf<IoObject>::get(object);
  // From the descriptor's own state: use_service would take the service registry's lock and
  // compare type names on every read. A closed object has none; Asio then fails the operation.
  auto& reactor = impl.reactor_data_
                      ? reactorOf(impl.reactor_data_)
                      : boost::asio::use_service<ad::reactor>(boost::asio::query(
                            object.get_executor(), boost::asio::execution::context));

  typename ReadOp::ptr p = {std::addressof(handler), ReadOp::ptr::allocate(handler), nullptr};
  p.p = new (p.v) ReadOp(impl.socket_, std::move(perform), handler, object.get_executor());
  if ((impl.state_ & ad::socket_ops::non_blocking) == 0 &&
      !ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
    reactor.post_immediate_completion(p.p, false);
  } else {
    reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p, false, true);
  }
  p.v = p.p = nullptr;
}

bool* trySpeculative(ad::epoll_reactor::per_descriptor_data state);

// Asio makes a socket's reactor state when the socket opens and never frees it: closed, it goes
// to a pool for the next socket. Made one at a time, amid the memory of the sessions open then,
// those survivors cut the heap into pieces once the sessions end, and every later allocation
// pays for it (docs/benchmarks.md, "Full handshakes after many idle TLS connections"). When the
// pool is empty this makes the next states in one run, so they sit together.
void refillStatePool(ad::epoll_reactor::per_descriptor_data state);

template <typename Socket>
void keepStatesTogether(Socket& socket) {
  if (const auto state = ImplementationOf<Socket>::get(socket).reactor_data_) refillStatePool(state);
}

template <typename Socket>
void markDrained(Socket& socket) {
  trySpeculative(ImplementationOf<Socket>::get(socket).reactor_data_)[ad::reactor::read_op] = false;
}

// True when the last read drained `socket` and epoll has reported nothing since.
template <typename Socket>
bool knownDrained(Socket& socket) {
  const auto state = ImplementationOf<Socket>::get(socket).reactor_data_;
  return state && !trySpeculative(state)[ad::reactor::read_op];
}

// For a socket adopted from a descriptor this process created non-blocking (SOCK_NONBLOCK,
// accept4) and never duplicated: tells Asio so, which spares an ioctl(FIONBIO) before its first
// operation and an epoll_ctl(DEL) at close (closing the descriptor removes it from epoll).
template <typename Socket>
void adoptedNonBlocking(Socket& socket) {
  auto& impl = ImplementationOf<Socket>::get(socket);
  impl.state_ |= ad::socket_ops::internal_non_blocking;
  impl.state_ &= static_cast<ad::socket_ops::state_type>(~ad::socket_ops::possible_dup);
}

}  // namespace wsgate::gateway::reactor

#else  // Asio's stock operations.
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

namespace wsgate::gateway::reactor {

enum class Status { not_done, done, done_and_exhausted };
using socket_type = int;

// Waits until `object` is readable, then tries `perform` again.
template <typename IoObject, typename Perform, typename Handler>
void waitToRead(IoObject& object, Perform perform, Handler handler) {
  auto executor = boost::asio::get_associated_executor(handler, object.get_executor());
  object.async_wait(
      IoObject::wait_read,
      boost::asio::bind_executor(
          executor, [&object, perform = std::move(perform),
                     handler = std::move(handler)](boost::system::error_code ec) mutable {
            std::size_t result = 0;
            if (!ec && perform(object.native_handle(), ec, result) == Status::not_done) {
              return waitToRead(object, std::move(perform), std::move(handler));
            }
            handler(ec, result);
          }));
}

// Tried at once, like Asio's own reads, since a wait would miss an edge already reported.
template <typename IoObject, typename Perform, typename Handler>
void startRead(IoObject& object, Perform perform, Handler handler) {
  boost::system::error_code ec;
  std::size_t result = 0;
  if (perform(object.native_handle(), ec, result) == Status::not_done) {
    return waitToRead(object, std::move(perform), std::move(handler));
  }
  boost::asio::post(object.get_executor(),
                    boost::asio::append(std::move(handler), ec, result));
}

template <typename Socket>
void markDrained(Socket&) {}

// Stock Asio keeps no such mark: the caller has to ask the kernel.
template <typename Socket>
bool knownDrained(Socket&) {
  return false;
}

template <typename Socket>
void adoptedNonBlocking(Socket&) {}

template <typename Socket>
void keepStatesTogether(Socket&) {}

}  // namespace wsgate::gateway::reactor
#endif
