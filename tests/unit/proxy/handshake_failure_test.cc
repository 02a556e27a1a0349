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

// A worker's context and a one-route config whose route runs `factory`'s handshake filter, and
// one upgrade request over a real loopback connection, served by serveClient.
class HandshakeHarness {
 public:
  explicit HandshakeHarness(std::shared_ptr<const filters::FilterFactory> factory)
      : buffers_(stats_, 8, 2),
        read_buffer_(RelayBuffers::kBufferSize),
        context_{io_, stats_, buffers_, {read_buffer_.data(), read_buffer_.size()}, deadlines_, 0} {
    auto config = std::make_shared<config::Config>();
    config::Listener listener;
    listener.name = "public";
    config::Route route;
    route.name = "app";
    route.cluster = "echo";
    route.filters.push_back({std::string(factory->name()), "routes[0].filters[0]", factory});
    listener.routes.push_back(route);
    config->listeners.push_back(listener);
    config::Cluster cluster;
    cluster.name = "echo";
    cluster.type = config::Cluster::Type::kEcho;
    config->clusters.push_back(cluster);
    table_ = std::make_shared<RoutingTable>(context_, config, TlsContexts::build(*config));
  }
  ~HandshakeHarness() { deadlines_.close(); }

  // Sends an upgrade request and returns what the gateway answered before it closed.
  std::string serve() {
    asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket client(io_);
    client.connect(acceptor.local_endpoint());
    const std::string request =
        "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    asio::write(client, asio::buffer(request));
    asio::ip::tcp::endpoint peer;
    asio::ip::tcp::socket accepted = acceptor.accept(peer);
    asio::co_spawn(io_, serveClient(context_, table_, 0, std::move(accepted), peer),
                   [this](std::exception_ptr error) { escaped = error != nullptr; });
    asio::post(io_, [this] { served_after = true; });
    std::string answer;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(2ms);
      char chunk[1024];
      const ssize_t n = ::recv(client.native_handle(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (n > 0) answer.append(chunk, static_cast<size_t>(n));
      if (n == 0) break;  // the gateway closed after its answer
    }
    return answer;
  }

  int64_t count(Metric metric, std::string_view second_label) const {
    int64_t found = 0;
    stats_.forEach([&](const WorkerStats::Key& key, int64_t value) {
      if (key.first == metric && key.second.size() > 1 && key.second[1] == second_label) {
        found = value;
      }
    });
    return found;
  }

  bool escaped = false;
  bool served_after = false;

 private:
  WorkerStats stats_;
  RelayBuffers buffers_;
  std::vector<uint8_t> read_buffer_;
  // Before io_, as in the worker: what io_ destroys still unlinks from it (timer released first).
  Deadlines deadlines_{io_};
  asio::io_context io_;
  WorkerContext context_;
  std::shared_ptr<RoutingTable> table_;
};

TEST(HandshakeFailureTest, ThrowingHandshakeFilterAnswers500AndIsCounted) {
  HandshakeHarness harness(std::make_shared<ThrowingFactory>());
  const std::string answer = harness.serve();
  EXPECT_EQ(answer.rfind("HTTP/1.1 500", 0), 0u) << answer;
  EXPECT_FALSE(harness.escaped);
  EXPECT_TRUE(harness.served_after);
  EXPECT_EQ(harness.count(Metric::kHandshakeRejections, "internal_error"), 1);
  EXPECT_EQ(harness.count(Metric::kConnectionsTotal, "failed"), 1);
}

// What a handshake filter is told of the connection besides the request: here a plain one, so
// not secure and no client certificate (test_tls.py covers a verified certificate end to end).
class RecordingHandshakeFilter final : public filters::HandshakeFilter {
 public:
  filters::HandshakeVerdict onHandshake(const filters::HandshakeRequest& request) const override {
    secure = request.secure();
    certificate = std::string(request.clientCertificate());
    address = std::string(request.clientAddress());
    return filters::HandshakeRejection{403, "recorded"};
  }
  mutable bool secure = true;
  mutable std::string certificate = "unset";
  mutable std::string address;
};

class RecordingFactory final : public filters::FilterFactory {
 public:
  std::string_view name() const override { return "recorder"; }
  const filters::HandshakeFilter* handshakeFilter() const override { return &filter; }
  RecordingHandshakeFilter filter;
};

TEST(HandshakeRequestTest, AFilterIsToldWhetherTheConnectionIsSecureAndItsCertificate) {
  auto factory = std::make_shared<RecordingFactory>();
  HandshakeHarness harness(factory);
  const std::string answer = harness.serve();
  EXPECT_EQ(answer.rfind("HTTP/1.1 403", 0), 0u) << answer;
  EXPECT_FALSE(factory->filter.secure);
  EXPECT_EQ(factory->filter.certificate, "");
  EXPECT_EQ(factory->filter.address, "127.0.0.1");
}

}  // namespace
}  // namespace wsgate::gateway
