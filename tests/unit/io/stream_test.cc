#include "io/stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;

// A connected loopback TCP pair as the relay has it: no Nagle, TCP_INQ on the reading side.
// `receive_buffer` (SO_RCVBUF, set before the handshake so the window is sized from it) bounds
// what the reader's queue, and so the writer's window, can hold.
struct TcpPair {
  int reader = -1;
  int writer = -1;
  explicit TcpPair(int receive_buffer = 0) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      ::setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
    writer = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(::connect(writer, reinterpret_cast<sockaddr*>(&address), length), 0);
    reader = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    const int on = 1;
    ::setsockopt(writer, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(reader, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    EXPECT_TRUE(reportBytesLeft(reader));
  }
  ~TcpPair() {
    if (reader >= 0) ::close(reader);
    if (writer >= 0) ::close(writer);
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
};

// A send or receive that would wait longer than `limit` fails (EAGAIN) instead: a stalled flow
// ends the test rather than hanging it.
void boundWaits(int fd, std::chrono::seconds limit) {
  const timeval tv{static_cast<time_t>(limit.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

bool sendAll(int fd, const char* data, size_t size) {
  for (size_t sent = 0; sent < size;) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads `fd` to its end: "fin" for an orderly end of stream, else why not.
std::string howTheStreamEnds(int fd) {
  std::array<char, 256> sink{};
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return "still open";
    const ssize_t n = ::recv(fd, sink.data(), sink.size(), 0);
    if (n == 0) return "fin";
    if (n < 0) return std::strerror(errno);
  }
}

// Messages of 64 B to 1 KiB, each telling its place in the stream.
std::string messages(size_t total) {
  std::string bytes;
  bytes.reserve(total + 1024);
  for (size_t i = 0; bytes.size() < total; ++i) {
    std::string one(64 + (i * 7919) % 961, static_cast<char>('a' + i % 26));
    const std::string tag = std::to_string(i) + ":";
    one.replace(0, tag.size(), tag);
    bytes += one;
  }
  bytes.resize(total);
  return bytes;
}

// A busy flow of small messages, then a burst while the reader is briefly slow: with a small
// receive buffer the burst fills the whole window before the reader's next read. Every byte
// must still arrive: a read that left relayed bytes queued would keep the window shut, and with
// no room to send, the writer sends nothing that could wake the reader again.
TEST(StreamTest, SmallReceiveBufferRelaysABurstAfterRoundTripsAndAPause) {
  constexpr size_t kRoundTrips = 50;
  constexpr size_t kRoundTripBytes = 70;
  const std::string burst = messages(4 << 20);
  boost::asio::io_context io;
  TcpPair pair(8192);
  boundWaits(pair.writer, 10s);
  Stream stream(boost::asio::ip::tcp::socket(io, boost::asio::ip::tcp::v4(), pair.reader));
  pair.reader = -1;  // the stream owns it now

  std::atomic<bool> writer_ok{true};
  std::thread writer([&] {
    const std::string small(kRoundTripBytes, 's');
    char answer = 0;
    for (size_t i = 0; i < kRoundTrips && writer_ok; ++i) {
      writer_ok = sendAll(pair.writer, small.data(), small.size()) &&
                  ::recv(pair.writer, &answer, 1, 0) == 1;
    }
    // The reader's answers to the burst queue up unread here: far less than a receive buffer.
    for (size_t sent = 0; sent < burst.size() && writer_ok; sent += 64 << 10) {
      writer_ok = sendAll(pair.writer, burst.data() + sent,
                          std::min<size_t>(64 << 10, burst.size() - sent));
    }
  });

  const size_t expected = kRoundTrips * kRoundTripBytes + burst.size();
  std::string got;
  std::array<char, 64 << 10> buffer{};
  boost::asio::steady_timer pause(io);
  boost::system::error_code failure;
  std::function<void()> readNext = [&] {
    stream.asyncReadSome(boost::asio::buffer(buffer), [&](boost::system::error_code ec, size_t n) {
      if (ec) {
        failure = ec;
        return;
      }
      const bool round_trips_done = got.size() < kRoundTrips * kRoundTripBytes &&
                                    got.size() + n >= kRoundTrips * kRoundTripBytes;
      got.append(buffer.data(), n);
      const std::array<boost::asio::const_buffer, 1> answer{boost::asio::buffer("k", 1)};
      boost::system::error_code write_ec;
      stream.writeSome(answer, write_ec);
      if (got.size() >= expected) return;
      if (!round_trips_done) return readNext();
      // The destination is slow for a moment: the burst fills the receive queue meanwhile.
      pause.expires_after(300ms);
      pause.async_wait([&](boost::system::error_code) { readNext(); });
    });
  };
  readNext();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < expected && !failure && std::chrono::steady_clock::now() < deadline) {
    io.run_for(100ms);
  }
  const size_t arrived = got.size();
  stream.close();  // ends the writer's sends at once if the flow stalled
  writer.join();

  ASSERT_FALSE(failure) << failure.message();
  ASSERT_EQ(arrived, expected) << "the flow stalled: " << arrived << " of " << expected
                               << " bytes arrived within 10 s";
  EXPECT_TRUE(writer_ok);
  EXPECT_EQ(got.substr(kRoundTrips * kRoundTripBytes), burst) << "bytes arrived out of order";
}

// Small reads answered one by one, then close: the peer sees a FIN. Closing a socket with unread
// bytes sends a reset, so the relay's reads must have left nothing of their own queued.
TEST(StreamTest, AStreamClosedAfterSmallRoundTripsSendsAFin) {
  boost::asio::io_context io;
  TcpPair pair;
  boundWaits(pair.writer, 5s);
  Stream stream(boost::asio::ip::tcp::socket(io, boost::asio::ip::tcp::v4(), pair.reader));
  pair.reader = -1;
  const int fd = stream.socket().native_handle();
  std::array<char, 256> buffer{};
  const std::string small(70, 's');
  for (size_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(sendAll(pair.writer, small.data(), small.size()));
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 2000), 1);
    boost::system::error_code ec;
    EXPECT_EQ(stream.readSome(boost::asio::buffer(buffer), ec), small.size());
    EXPECT_FALSE(ec);
    const std::array<boost::asio::const_buffer, 1> answer{boost::asio::buffer("k", 1)};
    EXPECT_EQ(stream.writeSome(answer, ec), 1u);
    char k = 0;
    ASSERT_EQ(::recv(pair.writer, &k, 1, 0), 1);
  }
  stream.close();
  EXPECT_EQ(howTheStreamEnds(pair.writer), "fin");
}

// A write meant to share its segment with the FIN (`more`) stays in the kernel until the
// close; when the stream stays open after all, push() sends it at once.
TEST(StreamTest, PushSendsWhatAWriteForTheFinHeldBack) {
  boost::asio::io_context io;
  TcpPair pair;
  Stream stream(boost::asio::ip::tcp::socket(io, boost::asio::ip::tcp::v4(), pair.writer));
  pair.writer = -1;
  boost::system::error_code ec;
  const std::array<boost::asio::const_buffer, 1> close{boost::asio::buffer("\x88\x02\x03\xe8", 4)};
  ASSERT_EQ(stream.writeSome(close, ec, /*more=*/true), 4u);
  ASSERT_FALSE(ec);
  std::array<char, 16> got{};
  pollfd p{pair.reader, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 100), 0) << "the bytes were not held back for the FIN";
  stream.push();
  ASSERT_EQ(::poll(&p, 1, 100), 1) << "push() did not send what was held back";
  EXPECT_EQ(::recv(pair.reader, got.data(), got.size(), MSG_DONTWAIT), 4);
  EXPECT_TRUE(stream.isOpen());
}

}  // namespace
}  // namespace wsgate::gateway
