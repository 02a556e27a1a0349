#include "io/held_read.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "io/stream.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;

// A connected loopback TCP pair as the relay has it: no Nagle, TCP_INQ on the reading side.
struct TcpPair {
  int reader = -1;
  int writer = -1;
  TcpPair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
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

bool kernelKeepsTcpPeekOffsets() {
  TcpPair pair;
  const int zero = 0;
  return ::setsockopt(pair.reader, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) == 0;
}

void sendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << std::strerror(errno);
    sent += static_cast<size_t>(n);
  }
}

bool readable(int fd, std::chrono::milliseconds within) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(within.count())) == 1;
}

// Reads `fd` to its end: "fin" for an orderly end of stream, else why not.
std::string howTheStreamEnds(int fd) {
  std::array<char, 64> sink{};
  for (;;) {
    if (!readable(fd, 2s)) return "still open";
    const ssize_t n = ::recv(fd, sink.data(), sink.size(), 0);
    if (n == 0) return "fin";
    if (n < 0) return std::strerror(errno);
  }
}

// Segments the socket has received, ACKs included: tcpi_segs_in, at offset 140 of the kernel's
// struct tcp_info (linux/tcp.h; glibc's copy of the struct stops before it).
uint32_t segmentsIn(int fd) {
  std::array<uint8_t, 256> info{};
  socklen_t length = info.size();
  EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, info.data(), &length), 0);
  EXPECT_GE(length, 144u);
  uint32_t segments = 0;
  std::memcpy(&segments, info.data() + 140, sizeof segments);
  return segments;
}

// A message of `size` bytes that tells its place in the stream.
std::string message(size_t index, size_t size) {
  std::string bytes(size, static_cast<char>('a' + index % 26));
  const std::string tag = std::to_string(index) + ":";
  bytes.replace(0, std::min(tag.size(), size), tag.substr(0, size));
  return bytes;
}

class HeldReadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernelKeepsTcpPeekOffsets()) {
      GTEST_SKIP() << "this kernel keeps no peek offset for TCP (Linux 6.10+): reads never hold";
    }
  }

  // Everything new on `fd` now, through `reads`: the bytes, and whether it ended in eof.
  std::string drain(HeldReads& reads, int fd, bool* eof = nullptr) {
    std::string got;
    for (;;) {
      boost::system::error_code ec;
      size_t n = 0;
      const auto status = reads.read(fd, boost::asio::buffer(buffer_), ec, n);
      if (status == reactor::Status::not_done) return got;
      if (ec) {
        if (eof != nullptr) *eof = ec == boost::asio::error::eof;
        return got;
      }
      got.append(buffer_.data(), n);
      max_held_ = std::max(max_held_, reads.held());
      if (status == reactor::Status::done_and_exhausted) return got;
    }
  }

  std::array<char, 16384> buffer_{};
  size_t max_held_ = 0;
};

TEST_F(HeldReadsTest, RelaysEveryByteOnceThroughPeeksTakeBacksAndBulk) {
  TcpPair pair;
  HeldReads reads;
  std::string sent;
  std::string got;
  // Small messages answered one by one, so reads hold; a bulk burst in the middle overshoots
  // what an ordinary read can take back into scratch; then small ones again.
  std::vector<size_t> sizes(300, 70);
  sizes[150] = 9000;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string bytes = message(i, sizes[i]);
    sendAll(pair.writer, bytes);
    sent += bytes;
    while (got.size() < sent.size()) {
      ASSERT_TRUE(readable(pair.reader, 2s)) << "message " << i << " never arrived";
      got += drain(reads, pair.reader);
    }
    sendAll(pair.reader, "k");  // the answer that carries the ACK
    reads.noteAnswer();
    ASSERT_EQ(got, sent) << "after message " << i;
  }
  EXPECT_GE(max_held_, HeldReads::kHoldAtMost) << "the reads never held up to the bound";
  EXPECT_LT(reads.held(), HeldReads::kHoldAtMost + 16384);
}

TEST_F(HeldReadsTest, AFinBehindHeldBytesEndsTheStreamAndReleaseLetsTheCloseBeAFin) {
  TcpPair pair;
  HeldReads reads;
  std::string got;
  for (size_t i = 0; i < 6; ++i) {
    sendAll(pair.writer, message(i, 70));
    ASSERT_TRUE(readable(pair.reader, 2s));
    got += drain(reads, pair.reader);
    sendAll(pair.reader, "k");
    reads.noteAnswer();
  }
  ASSERT_GT(reads.held(), 0u) << "nothing held: the test would prove nothing";
  sendAll(pair.writer, "last");
  ::shutdown(pair.writer, SHUT_WR);
  bool eof = false;
  for (int i = 0; i < 10 && !eof; ++i) {
    ASSERT_TRUE(readable(pair.reader, 2s));
    got += drain(reads, pair.reader, &eof);
  }
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.substr(got.size() - 4), "last");
  reads.release(pair.reader);
  EXPECT_EQ(reads.held(), 0u);
  ::close(pair.reader);
  pair.reader = -1;
  // The writer's side sees the reader's FIN (end of stream), not a reset.
  EXPECT_EQ(howTheStreamEnds(pair.writer), "fin");
}

// The reason for holding: a plain read that empties the queue after small pushed segments
// sends an ACK at once; a held read does not (the next answer carries it). The kernel's
// delayed-ACK timer may still fire during any one trial, so each side gets three and counts
// its fewest.
TEST_F(HeldReadsTest, AHeldReadSendsNoAckWhereAPlainReadDoes) {
  auto fewestAcksFromARead = [this](bool hold) -> uint32_t {
    TcpPair pair;
    HeldReads reads;
    auto roundTrip = [&] {
      sendAll(pair.writer, message(0, 70));
      EXPECT_TRUE(readable(pair.reader, 2s));
      drain(reads, pair.reader);
      sendAll(pair.reader, "k");  // the answer carries the ACK
      if (hold) reads.noteAnswer();  // without answers noted, reads never hold
      EXPECT_TRUE(readable(pair.writer, 2s));
      char k = 0;
      EXPECT_EQ(::recv(pair.writer, &k, 1, 0), 1);
    };
    // Round trips first: the kernel leaves its quick-ACK start and sees an interactive flow.
    for (size_t i = 0; i < 200; ++i) roundTrip();
    uint32_t fewest = UINT32_MAX;
    for (int trial = 0; trial < 3; ++trial) {
      // Room for the trial's bytes: a read at the bound takes the held bytes back (and ACKs).
      while (reads.held() + 3 * 70 >= HeldReads::kHoldAtMost) roundTrip();
      for (size_t i = 0; i < 3; ++i) {
        sendAll(pair.writer, message(i, 70));
        std::this_thread::sleep_for(200us);  // three segments, not one
      }
      const uint32_t before = segmentsIn(pair.writer);
      if (hold) {
        EXPECT_EQ(drain(reads, pair.reader).size(), 3 * 70u);
        EXPECT_GT(reads.held(), 0u);
      } else {
        std::array<char, 1024> sink{};
        EXPECT_EQ(::recv(pair.reader, sink.data(), sink.size(), MSG_DONTWAIT), 3 * 70);
      }
      // On loopback an ACK sent by the read has reached the writer when the read returns.
      fewest = std::min(fewest, segmentsIn(pair.writer) - before);
      roundTrip();
    }
    return fewest;
  };
  EXPECT_EQ(fewestAcksFromARead(false), 1u) << "a plain read should have sent an ACK at once";
  EXPECT_EQ(fewestAcksFromARead(true), 0u) << "a held read sent an ACK";
}

// Stream holds on TCP and releases on close: its peer gets a FIN, never a reset.
TEST_F(HeldReadsTest, AStreamClosedWithHeldBytesSendsAFin) {
  boost::asio::io_context io;
  TcpPair pair;
  Stream stream(boost::asio::ip::tcp::socket(io, boost::asio::ip::tcp::v4(), pair.reader));
  pair.reader = -1;  // the stream owns it now
  const int fd = stream.socket().native_handle();
  std::array<char, 256> buffer{};
  for (size_t i = 0; i < 6; ++i) {
    sendAll(pair.writer, message(i, 70));
    ASSERT_TRUE(readable(fd, 2s));
    boost::system::error_code ec;
    EXPECT_EQ(stream.readSome(boost::asio::buffer(buffer), ec), 70u);
    EXPECT_FALSE(ec);
    const std::array<boost::asio::const_buffer, 1> answer{boost::asio::buffer("k", 1)};
    EXPECT_EQ(stream.writeSome(answer, ec), 1u);
  }
  int queued = 0;
  ASSERT_EQ(::ioctl(fd, FIONREAD, &queued), 0);
  ASSERT_GT(queued, 0) << "the stream held nothing: the test would prove nothing";
  stream.close();
  EXPECT_EQ(howTheStreamEnds(pair.writer), "fin");
}

}  // namespace
}  // namespace wsgate::gateway
