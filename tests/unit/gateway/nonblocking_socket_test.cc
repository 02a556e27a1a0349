#include "gateway/nonblocking_socket.h"

#include <fcntl.h>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>

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

  // Connects with connectNonBlocking; the result once the loop ran (nullopt: still waiting).
  std::optional<boost::system::error_code> connect(tcp::socket& socket, tcp::endpoint to) {
    std::optional<boost::system::error_code> result;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> { result = co_await connectNonBlocking(io_, socket, to); },
        asio::detached);
    io_.restart();
    io_.run_for(std::chrono::seconds(2));
    return result;
  }

  asio::io_context io_;
};

TEST_F(NonBlockingSocketTest, AcceptsAndConnectsNonBlockingSocketsThatCarryBytes) {
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

}  // namespace
}  // namespace wsgate::gateway
