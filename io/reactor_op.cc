#include "io/reactor_op.h"

#if WSGATE_ASIO_INTERNALS

namespace wsgate::gateway::reactor {

namespace {

// An explicit instantiation may name a private member (access is not checked there); the
// instantiated class defines a friend function that returns that member pointer.
struct AcceptorImplMember {
  using type = AcceptorImpl Acceptor::*;
  friend type memberOf(AcceptorImplMember);
};
template <typename Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type memberOf(Tag) { return Member; }
};
template struct Expose<AcceptorImplMember, &Acceptor::impl_>;

// The reactor's per-descriptor flags saying whether an operation may be tried before epoll
// reports the descriptor ready.
using DescriptorState = ad::epoll_reactor::descriptor_state;
struct TrySpeculativeMember {
  using type = bool (DescriptorState::*)[ad::epoll_reactor::max_ops];
  friend type memberOf(TrySpeculativeMember);
};
template struct Expose<TrySpeculativeMember, &DescriptorState::try_speculative_>;

// The reactor a registered descriptor belongs to.
struct ReactorMember {
  using type = ad::epoll_reactor* DescriptorState::*;
  friend type memberOf(ReactorMember);
};
template struct Expose<ReactorMember, &DescriptorState::reactor_>;

}  // namespace

bool* trySpeculative(ad::epoll_reactor::per_descriptor_data state) {
  return state->*memberOf(TrySpeculativeMember{});
}

ad::epoll_reactor& reactorOf(ad::epoll_reactor::per_descriptor_data state) {
  return *(state->*memberOf(ReactorMember{}));
}

AcceptorImpl& acceptorImpl(Acceptor& acceptor) {
  return acceptor.*memberOf(AcceptorImplMember{});
}

}  // namespace wsgate::gateway::reactor
#endif
