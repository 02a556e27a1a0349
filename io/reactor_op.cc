#include "io/reactor_op.h"

#if WSGATE_ASIO_INTERNALS
#include <array>
#include <cstddef>

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

// The reactor's pool of per-descriptor states, and the calls that take one from it (making one
// when it is empty) and give one back.
using Reactor = ad::epoll_reactor;
using StatePool = ad::object_pool<DescriptorState>;
struct PoolMember {
  using type = StatePool Reactor::*;
  friend type memberOf(PoolMember);
};
template struct Expose<PoolMember, &Reactor::registered_descriptors_>;
struct FreeListMember {
  using type = DescriptorState* StatePool::*;
  friend type memberOf(FreeListMember);
};
template struct Expose<FreeListMember, &StatePool::free_list_>;
struct AllocateStateMember {
  using type = DescriptorState* (Reactor::*)();
  friend type memberOf(AllocateStateMember);
};
template struct Expose<AllocateStateMember, &Reactor::allocate_descriptor_state>;
struct FreeStateMember {
  using type = void (Reactor::*)(DescriptorState*);
  friend type memberOf(FreeStateMember);
};
template struct Expose<FreeStateMember, &Reactor::free_descriptor_state>;

// Enough that the runs stay few (one per this many sockets), small enough that a worker with
// few connections keeps little it does not use.
constexpr std::size_t kStatesPerRun = 1024;

}  // namespace

void refillStatePool(ad::epoll_reactor::per_descriptor_data state) {
  Reactor& reactor = reactorOf(state);
  if (reactor.*memberOf(PoolMember{}).*memberOf(FreeListMember{}) != nullptr) return;
  std::array<DescriptorState*, kStatesPerRun> run;
  for (auto& made : run) made = (reactor.*memberOf(AllocateStateMember{}))();
  for (auto* made : run) (reactor.*memberOf(FreeStateMember{}))(made);
}

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
