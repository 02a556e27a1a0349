#include "io/nonblocking_socket.h"

#include <fcntl.h>
#include <netinet/tcp.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace wsgate::gateway {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

bool isNonBlocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

class NonBlockingSocketTest : public ::testing::Test {
 protected:
  tcp::acceptor listen(const tcp::endpoint& at) {
    tcp::acceptor acceptor(io_, at);
    return acceptor;
  }

  // Connects with startConnect, then awaitConnected if it must wait; the result once the loop
  // ran (nullopt: still waiting).
  std::optional<boost::system::error_code> connect(tcp::socket& socket, tcp::endpoint to) {
    std::optional<boost::system::error_code> result;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          auto ec = startConnect(io_, socket, to);
          if (ec == asio::error::in_progress) ec = co_await awaitConnected(socket);
          result = ec;
        },
        asio::detached);
    io_.restart();
    io_.run_for(std::chrono::seconds(2));
    return result;
  }

  asio::io_context io_;
};

TEST_F(NonBlockingSocketTest, AcceptsAndConnectsNonBlockingSocketsThatCarryBytes) {
#if !WSGATE_ASIO_INTERNALS
  GTEST_SKIP() << "built with Asio's stock accept (WSGATE_ASIO_INTERNALS off): the accepted "
                  "socket turns non-blocking only at its first operation";
#endif
  for (const auto& address : {asio::ip::make_address("127.0.0.1"), asio::ip::make_address("::1")}) {
    SCOPED_TRACE(address.to_string());
    tcp::acceptor acceptor = listen({address, 0});
    tcp::endpoint peer;
    std::optional<tcp::socket> accepted;
    asyncAcceptNonBlocking(acceptor, peer,
                           [&](const boost::system::error_code& ec, tcp::socket socket) {
                             ASSERT_FALSE(ec) << ec.message();
                             accepted.emplace(std::move(socket));
                           });
    tcp::socket client(io_);
    auto connected = connect(client, acceptor.local_endpoint());
    ASSERT_TRUE(connected.has_value());
    ASSERT_FALSE(*connected) << connected->message();
    ASSERT_TRUE(accepted.has_value());
    EXPECT_TRUE(isNonBlocking(client.native_handle()));
    EXPECT_TRUE(isNonBlocking(accepted->native_handle()));
    EXPECT_EQ(peer, client.local_endpoint()) << "the peer address comes with the accept";

    asio::write(client, asio::buffer("ping", 4));
    char got[4];
    accepted->non_blocking(false);
    asio::read(*accepted, asio::buffer(got));
    EXPECT_EQ(std::string(got, 4), "ping");
  }
}

TEST_F(NonBlockingSocketTest, ALoopbackConnectCompletesAtOnceAndRefusalsAreKnownAtOnce) {
  tcp::acceptor acceptor = listen({asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket socket(io_);
  EXPECT_FALSE(startConnect(io_, socket, acceptor.local_endpoint()))
      << "the kernel completes a loopback handshake inside connect(): nothing to wait for";
  int nodelay = 0;
  socklen_t length = sizeof nodelay;
  ASSERT_EQ(::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &length), 0);
  EXPECT_NE(nodelay, 0);

  const tcp::endpoint closed = acceptor.local_endpoint();
  acceptor.close();
  tcp::socket refused(io_);
  EXPECT_EQ(startConnect(io_, refused, closed), asio::error::connection_refused);
}

// With the bytes the caller sends first, the send says whether the connection is up: one
// system call fewer than a second connect() followed by the send.
TEST_F(NonBlockingSocketTest, FirstBytesGoOutWithALoopbackConnectAndRefusalsAreKnownAtOnce) {
  tcp::acceptor acceptor = listen({asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket socket(io_);
  constexpr std::string_view kRequest = "GET / HTTP/1.1\r\n\r\n";
  size_t sent = 99;
  EXPECT_FALSE(startConnect(io_, socket, acceptor.local_endpoint(), kRequest, sent));
  EXPECT_EQ(sent, kRequest.size());
  tcp::socket accepted = acceptor.accept();
  std::string got(kRequest.size(), '\0');
  asio::read(accepted, asio::buffer(got));
  EXPECT_EQ(got, kRequest);

  const tcp::endpoint closed = acceptor.local_endpoint();
  acceptor.close();
  tcp::socket refused(io_);
  EXPECT_EQ(startConnect(io_, refused, closed, kRequest, sent), asio::error::connection_refused);
  EXPECT_EQ(sent, 0u);
}

TEST_F(NonBlockingSocketTest, AConnectThatMustWaitIsAwaited) {
  // Backlog 0: the accept queue holds one connection and the kernel drops the SYN of the next
  // one, which stays in progress until the queue has room and the SYN is sent again (~1 s).
  tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0}, true);
  acceptor.listen(0);
  // Filled by plain connects: startConnect's hold on the last ACK would leave its connections
  // out of the accept queue until they send something.
  std::vector<tcp::socket> queued;
  bool full = false;
  for (int i = 0; i < 8 && !full; ++i) {  // the queue's exact size depends on the kernel
    tcp::socket socket(io_, tcp::v4());
    socket.non_blocking(true);
    const auto to = acceptor.local_endpoint();
    const auto length = static_cast<socklen_t>(to.size());
    int rc = ::connect(socket.native_handle(), to.data(), length);
    // A loopback connect is done by the time the call returns, unless the SYN was dropped.
    if (rc != 0 && errno == EINPROGRESS) rc = ::connect(socket.native_handle(), to.data(), length);
    if (rc != 0 && errno == EISCONN) rc = 0;
    full = rc != 0 && (errno == EALREADY || errno == EINPROGRESS);
    if (full) break;  // its SYN was dropped: the queue is full
    ASSERT_EQ(rc, 0) << std::strerror(errno);
    queued.push_back(std::move(socket));
  }
  ASSERT_TRUE(full) << "the accept queue never filled";
  tcp::socket waiting(io_);
  const boost::system::error_code started = startConnect(io_, waiting, acceptor.local_endpoint());
  ASSERT_EQ(started, asio::error::in_progress) << started.message();
  {
    // The same with bytes to send first: the send finds the connection still being made.
    tcp::socket also_waiting(io_);
    size_t sent = 99;
    EXPECT_EQ(startConnect(io_, also_waiting, acceptor.local_endpoint(), "GET", sent),
              asio::error::in_progress);
    EXPECT_EQ(sent, 0u);
  }
  std::optional<boost::system::error_code> result;
  asio::co_spawn(
      io_, [&]() -> asio::awaitable<void> { result = co_await awaitConnected(waiting); },
      asio::detached);
  io_.run_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(result.has_value()) << "completed although the SYN was dropped";
  for (size_t i = 0; i < queued.size(); ++i) acceptor.accept();  // room for the retried SYN
  io_.restart();
  for (int i = 0; i < 100 && !result; ++i) io_.run_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(result.has_value()) << "still waiting 10 s after the queue had room";
  EXPECT_FALSE(*result) << result->message();
}

TEST_F(NonBlockingSocketTest, ConnectingToAClosedPortIsRefused) {
  tcp::endpoint closed;
  {
    tcp::acceptor probe = listen({asio::ip::make_address("127.0.0.1"), 0});
    closed = probe.local_endpoint();
  }
  tcp::socket socket(io_);
  auto result = connect(socket, closed);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, asio::error::connection_refused);
}

TEST_F(NonBlockingSocketTest, AClosedAcceptorEndsThePendingAccept) {
  tcp::acceptor acceptor = listen({asio::ip::make_address("127.0.0.1"), 0});
  tcp::endpoint peer;
  std::optional<boost::system::error_code> result;
  asyncAcceptNonBlocking(acceptor, peer, [&](const boost::system::error_code& ec, tcp::socket) {
    result = ec;
  });
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(result.has_value());
  acceptor.close();
  io_.restart();
  io_.run_for(std::chrono::seconds(2));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, asio::error::operation_aborted);
}

#if WSGATE_ASIO_INTERNALS
// Each socket's reactor state outlives the socket (Asio pools it): made between the blocks of
// the sessions open at the time, they would split the heap once those sessions end.
TEST_F(NonBlockingSocketTest, ReactorStatesOfAdoptedSocketsAreMadeTogether) {
  constexpr size_t kSockets = 200;
  std::vector<tcp::socket> sockets;
  std::vector<std::unique_ptr<char[]>> session_memory;  // what a session allocates meanwhile
  std::vector<uintptr_t> states;
  for (size_t i = 0; i < kSockets; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    boost::system::error_code ec;
    sockets.push_back(adoptSocket(io_, tcp::v4(), fd, ec));
    ASSERT_FALSE(ec) << ec.message();
    session_memory.push_back(std::make_unique<char[]>(2048));
    states.push_back(reinterpret_cast<uintptr_t>(
        reactor::ImplementationOf<tcp::socket>::get(sockets.back()).reactor_data_));
  }
  // Apart from where one run of states ends and the next starts, neighbours are adjacent.
  size_t far_apart = 0;
  for (size_t i = 1; i < states.size(); ++i) {
    const uintptr_t gap = states[i] > states[i - 1] ? states[i] - states[i - 1]
                                                    : states[i - 1] - states[i];
    if (gap > 1024) ++far_apart;
  }
  EXPECT_LE(far_apart, 2u);
}
#endif

}  // namespace
}  // namespace wsgate::gateway
