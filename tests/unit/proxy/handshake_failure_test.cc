// A handshake filter that throws fails that connection only: the client is answered 500, the
// failure is counted, and the worker's io_context goes on. Over a real loopback connection.
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "filters/filter.h"
#include "proxy/client_handshake.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

class ThrowingHandshakeFilter final : public filters::HandshakeFilter {
 public:
  filters::HandshakeVerdict onHandshake(const filters::HandshakeRequest&) const override {
    throw std::runtime_error("handshake filter broke");
  }
};

class ThrowingFactory final : public filters::FilterFactory {
 public:
  std::string_view name() const override { return "thrower"; }
  const filters::HandshakeFilter* handshakeFilter() const override { return &filter_; }

 private:
  ThrowingHandshakeFilter filter_;
};

TEST(HandshakeFailureTest, ThrowingHandshakeFilterAnswers500AndIsCounted) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 8, 2);
  std::vector<uint8_t> read_buffer(RelayBuffers::kBufferSize);
  asio::io_context io;
  WorkerContext context{io, stats, buffers, {read_buffer.data(), read_buffer.size()}, 0};

  auto config = std::make_shared<config::Config>();
  config::Listener listener;
  listener.name = "public";
  config::Route route;
  route.name = "app";
  route.cluster = "echo";
  route.filters.push_back({"thrower", "routes[0].filters[0]", std::make_shared<ThrowingFactory>()});
  listener.routes.push_back(route);
  config->listeners.push_back(listener);
  config::Cluster cluster;
  cluster.name = "echo";
  cluster.type = config::Cluster::Type::kEcho;
  config->clusters.push_back(cluster);
  auto table = std::make_shared<RoutingTable>(context, config, TlsContexts::build(*config));

  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  const std::string request =
      "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  asio::write(client, asio::buffer(request));
  asio::ip::tcp::endpoint peer;
  asio::ip::tcp::socket accepted = acceptor.accept(peer);

  bool escaped = false;
  asio::co_spawn(io, serveClient(context, table, 0, std::move(accepted), peer),
                 [&](std::exception_ptr error) { escaped = error != nullptr; });
  bool served_after = false;
  asio::post(io, [&] { served_after = true; });

  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(2ms);
    char chunk[1024];
    const ssize_t n = ::recv(client.native_handle(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) answer.append(chunk, static_cast<size_t>(n));
    if (n == 0) break;  // the gateway closed after its answer
  }
  EXPECT_EQ(answer.rfind("HTTP/1.1 500", 0), 0u) << answer;
  EXPECT_FALSE(escaped);
  EXPECT_TRUE(served_after);
  int64_t internal_errors = 0, failed = 0;
  stats.forEach([&](const WorkerStats::Key& key, int64_t value) {
    if (key.first == Metric::kHandshakeRejections && key.second[1] == "internal_error") {
      internal_errors = value;
    }
    if (key.first == Metric::kConnectionsTotal && key.second[1] == "failed") failed = value;
  });
  EXPECT_EQ(internal_errors, 1);
  EXPECT_EQ(failed, 1);
}

}  // namespace
}  // namespace wsgate::gateway
