// A failure inside one session (a message filter that throws) closes that session with 1011
// both ways and leaves the worker's io_context serving the others. Sessions run over real
// Unix socketpairs; the test plays client and backend on the far ends.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "proxy/session.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;

class ThrowingFilter final : public filters::MessageFilter {
 public:
  explicit ThrowingFilter(std::function<void()> raise) : raise_(std::move(raise)) {}
  filters::FrameVerdict onFrame(const filters::FrameEvent& frame) override {
    if (frame.opcode == opcode::kText) raise_();
    return {};
  }

 private:
  std::function<void()> raise_;
};

class ThrowingFactory final : public filters::FilterFactory {
 public:
  explicit ThrowingFactory(std::function<void()> raise) : raise_(std::move(raise)) {}
  std::string_view name() const override { return "thrower"; }
  std::unique_ptr<filters::MessageFilter> newMessageFilter(
      const filters::SessionContext&) const override {
    return std::make_unique<ThrowingFilter>(raise_);
  }

 private:
  std::function<void()> raise_;
};

// One end of a socketpair as a session's Stream, the other as a plain descriptor for the test.
struct Peer {
  int fd = -1;
  std::vector<uint8_t> received;
  bool eof = false;

  ~Peer() {
    if (fd >= 0) ::close(fd);
  }
  void send(const std::vector<uint8_t>& bytes) const {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void poll() {
    uint8_t chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n > 0) {
        received.insert(received.end(), chunk, chunk + n);
        continue;
      }
      if (n == 0) eof = true;
      return;
    }
  }
};

Stream streamWithPeer(boost::asio::io_context& io, Peer& peer) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  peer.fd = fds[1];
  Socket socket(io);
  socket.assign(boost::asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
  socket.non_blocking(true);
  return Stream(std::move(socket));
}

// A single frame with a payload under 126 bytes; masked with a zero key (payload unchanged).
std::vector<uint8_t> frame(uint8_t opcode, const std::string& payload, bool masked) {
  std::vector<uint8_t> bytes(2 + (masked ? 4 : 0) + payload.size(), 0);
  bytes[0] = static_cast<uint8_t>(0x80 | opcode);
  bytes[1] = static_cast<uint8_t>((masked ? 0x80 : 0) | payload.size());
  std::memcpy(bytes.data() + bytes.size() - payload.size(), payload.data(), payload.size());
  return bytes;
}

// The close code of the first close frame in `bytes` (-1 if none is complete).
int closeCodeIn(const std::vector<uint8_t>& bytes) {
  size_t pos = 0;
  while (pos + 2 <= bytes.size()) {
    const uint8_t op = bytes[pos] & 0x0F;
    const size_t n = bytes[pos + 1] & 0x7F;  // the frames here are all short
    const bool masked = bytes[pos + 1] & 0x80;
    const size_t head = 2 + (masked ? 4 : 0);
    if (pos + head + n > bytes.size()) return -1;
    if (op == opcode::kClose && n >= 2) {
      uint8_t code[2] = {bytes[pos + head], bytes[pos + head + 1]};
      if (masked) {
        code[0] ^= bytes[pos + 2];
        code[1] ^= bytes[pos + 3];
      }
      return code[0] << 8 | code[1];
    }
    pos += head + n;
  }
  return -1;
}

class SessionFailureTest : public ::testing::TestWithParam<std::string> {
 protected:
  SessionFailureTest()
      : buffers_(stats_, 8, 2),
        read_buffer_(RelayBuffers::kBufferSize),
        context_{io_, stats_, buffers_, {read_buffer_.data(), read_buffer_.size()}, deadlines_, 0} {
    auto config = std::make_shared<config::Config>();
    config::Listener listener;
    listener.name = "public";
    config::Route route;
    route.name = "app";
    route.close_timeout = 2s;
    listener.routes.push_back(route);
    config->listeners.push_back(listener);
    config_ = config;
  }
  ~SessionFailureTest() { deadlines_.close(); }

  // A session between `client` and `upstream`, with a filter that calls `raise` on each text
  // frame (if given) on its route.
  std::shared_ptr<Session> open(Peer& client, Peer& upstream, std::function<void()> raise) {
    auto config = std::make_shared<config::Config>(*config_);
    if (raise) {
      config->listeners[0].routes[0].filters.push_back(
          {"thrower", "filters[0].thrower", std::make_shared<ThrowingFactory>(std::move(raise))});
    }
    SessionSetup setup;
    setup.config = config;
    setup.route = &config->listeners[0].routes[0];
    setup.client_address = "127.0.0.1";
    auto session = std::make_shared<Session>(context_, streamWithPeer(io_, client),
                                             streamWithPeer(io_, upstream), std::move(setup),
                                             ConnectionRecord(stats_, "public"));
    session->start({}, {});
    return session;
  }

  // Runs the loop until `done` holds (true) or 5 s pass (false).
  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(2ms);
      if (done()) return true;
    }
    return false;
  }

  int64_t count(Metric metric, std::vector<std::string> labels) const {
    int64_t value = 0;
    stats_.forEach([&](const WorkerStats::Key& key, int64_t v) {
      if (key.first == metric && key.second == labels) value = v;
    });
    return value;
  }

  WorkerStats stats_;
  RelayBuffers buffers_;
  std::vector<uint8_t> read_buffer_;
  // Before io_, as in the worker: what io_ destroys still unlinks from it (timer released first).
  Deadlines deadlines_{io_};
  boost::asio::io_context io_;
  WorkerContext context_;
  std::shared_ptr<const config::Config> config_;
};

TEST_P(SessionFailureTest, ThrowingFilterClosesOnlyItsSessionWith1011) {
  const std::string kind = GetParam();
  Peer client, upstream, other_client, other_upstream;
  std::weak_ptr<Session> failing = open(client, upstream, [kind] {
                                          if (kind == "bad_alloc") throw std::bad_alloc();
                                          throw std::runtime_error("filter broke");
                                        });
  std::weak_ptr<Session> healthy = open(other_client, other_upstream, nullptr);

  client.send(frame(opcode::kText, "boom", true));
  ASSERT_TRUE(runUntil([&] {
    client.poll();
    upstream.poll();
    return closeCodeIn(client.received) != -1 && closeCodeIn(upstream.received) != -1;
  }));
  EXPECT_EQ(closeCodeIn(client.received), 1011);
  EXPECT_EQ(closeCodeIn(upstream.received), 1011);
  // Nothing of the frame the filter failed on reached the backend: the close came first.
  EXPECT_EQ(upstream.received[0], 0x88);
  EXPECT_EQ(count(Metric::kSessionFailures, {"app"}), 1);

  // The client answers the close: the gateway ends the connection (it closes first).
  client.send(frame(opcode::kClose, "\x03\xf3", true));
  upstream.send(frame(opcode::kClose, "\x03\xf3", false));
  ::shutdown(upstream.fd, SHUT_WR);
  ASSERT_TRUE(runUntil([&] {
    client.poll();
    return client.eof && failing.expired();
  }));

  // The other session on the same io_context still relays both ways.
  other_client.send(frame(opcode::kText, "still here", true));
  ASSERT_TRUE(runUntil([&] {
    other_upstream.poll();
    return other_upstream.received.size() == 6 + 10;
  }));
  EXPECT_EQ(other_upstream.received, frame(opcode::kText, "still here", true));
  other_upstream.send(frame(opcode::kText, "pong", false));
  ASSERT_TRUE(runUntil([&] {
    other_client.poll();
    return other_client.received.size() == 2 + 4;
  }));
  EXPECT_EQ(other_client.received, frame(opcode::kText, "pong", false));
  EXPECT_FALSE(healthy.expired());
  EXPECT_EQ(count(Metric::kSessionFailures, {"app"}), 1);
}

INSTANTIATE_TEST_SUITE_P(Exceptions, SessionFailureTest,
                         ::testing::Values("runtime_error", "bad_alloc"));

}  // namespace
}  // namespace wsgate::gateway
