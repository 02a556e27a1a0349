#include "io/draining_read.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

namespace wsgate::gateway {
namespace {

using Socket = boost::asio::generic::stream_protocol::socket;

class DrainingReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    const boost::asio::generic::stream_protocol protocol(AF_UNIX, 0);
    reader_.emplace(io_, protocol, fds[0]);
    writer_.emplace(io_, protocol, fds[1]);
  }

  void send(const std::string& bytes) {
    boost::asio::write(*writer_, boost::asio::buffer(bytes));
  }

  struct Result {
    boost::system::error_code ec;
    std::string bytes;
  };

  // Starts one read of at most `size` bytes and runs the loop; nullopt if the read did not
  // complete within that time (it stays armed: run() again to see it complete).
  std::optional<Result> readOnce(size_t size, std::chrono::milliseconds run_for) {
    buffer_.fill(0);
    result_.reset();
    asyncDrainingRead(*reader_, boost::asio::buffer(buffer_.data(), size),
                      [this](const boost::system::error_code& ec, size_t n) {
                        result_ = Result{ec, std::string(buffer_.data(), n)};
                      });
    return run(run_for);
  }
  std::optional<Result> run(std::chrono::milliseconds run_for) {
    io_.restart();
    io_.run_for(run_for);
    return result_;
  }

  boost::asio::io_context io_;
  std::optional<Socket> reader_;
  std::optional<Socket> writer_;
  std::array<char, 256> buffer_{};
  std::optional<Result> result_;
};

TEST_F(DrainingReadTest, WaitsForBytesThenDeliversThem) {
  EXPECT_FALSE(readOnce(64, std::chrono::milliseconds(50)).has_value()) << "nothing was sent";
  send("hello");
  auto result = run(std::chrono::seconds(2));
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ec);
  EXPECT_EQ(result->bytes, "hello");
}

TEST_F(DrainingReadTest, AFullBufferLetsTheNextReadTakeWhatIsQueued) {
  // No new bytes arrive after the first read: if a full read marked the socket drained, the
  // next reads would wait for an edge that never comes.
  send("0123456789abcdefghij");
  auto first = readOnce(8, std::chrono::seconds(2));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->bytes, "01234567");
  auto second = readOnce(8, std::chrono::seconds(2));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->bytes, "89abcdef");
  auto third = readOnce(8, std::chrono::seconds(2));
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->bytes, "ghij");
}

// A Unix socket gives no TCP_INQ report, so reads keep Asio's behaviour: once the queue is
// empty the next read (after one recv that finds nothing) waits for new bytes.
TEST_F(DrainingReadTest, OnceTheQueueIsEmptyTheNextReadWaitsForNewBytes) {
  send("abc");
  auto first = readOnce(64, std::chrono::seconds(2));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->bytes, "abc");
  EXPECT_FALSE(readOnce(64, std::chrono::milliseconds(50)).has_value());
  send("def");
  auto second = run(std::chrono::seconds(2));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->bytes, "def");
}

TEST_F(DrainingReadTest, EndOfStreamIsEof) {
  writer_->close();
  auto result = readOnce(64, std::chrono::seconds(2));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->ec, boost::asio::error::eof);
  EXPECT_TRUE(result->bytes.empty());
}

TEST_F(DrainingReadTest, CancelEndsAWaitingRead) {
  std::optional<boost::system::error_code> seen;
  asyncDrainingRead(*reader_, boost::asio::buffer(buffer_),
                    [&](const boost::system::error_code& ec, size_t) { seen = ec; });
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(seen.has_value());
  reader_->cancel();
  io_.restart();
  io_.run_for(std::chrono::seconds(2));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, boost::asio::error::operation_aborted);
}

TEST_F(DrainingReadTest, AResetIsAnError) {
  // A peer that closes with bytes it never read resets the connection.
  boost::asio::write(*reader_, boost::asio::buffer(std::string("unread")));
  writer_->close();
  auto result = readOnce(64, std::chrono::seconds(2));
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->ec, boost::asio::error::connection_reset);
}

}  // namespace
}  // namespace wsgate::gateway

namespace wsgate::gateway {
namespace {

// Over TCP with TCP_INQ, as the relay runs: a short read marks the socket drained only when
// nothing, not even a FIN, is left.
class DrainingTcpReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    using boost::asio::ip::tcp;
    tcp::acceptor acceptor(io_, {boost::asio::ip::make_address("127.0.0.1"), 0});
    ASSERT_TRUE(reportBytesLeft(acceptor.native_handle()));
    writer_.emplace(io_);
    writer_->connect(acceptor.local_endpoint());
    reader_.emplace(acceptor.accept());
  }

  std::optional<std::pair<boost::system::error_code, std::string>> readOnce(
      std::chrono::milliseconds run_for) {
    std::optional<std::pair<boost::system::error_code, std::string>> result;
    asyncDrainingRead(*reader_, boost::asio::buffer(buffer_),
                      [&](const boost::system::error_code& ec, size_t n) {
                        result.emplace(ec, std::string(buffer_.data(), n));
                      });
    io_.restart();
    io_.run_for(run_for);
    if (!result) {
      reader_->cancel();  // the handler refers to `result`: end the read before returning
      io_.restart();
      io_.run_for(std::chrono::seconds(1));
      result.reset();
    }
    return result;
  }

  // Arms a read, then sends `bytes`: what that read got (nothing if it never completed).
  std::string readWhileSending(const std::string& bytes) {
    std::optional<std::string> got;
    asyncDrainingRead(*reader_, boost::asio::buffer(buffer_),
                      [&](const boost::system::error_code&, size_t n) {
                        got.emplace(buffer_.data(), n);
                      });
    boost::asio::write(*writer_, boost::asio::buffer(bytes));
    io_.restart();
    io_.run_for(std::chrono::seconds(2));
    if (!got) {
      reader_->cancel();  // the handler refers to `got`: end the read before returning
      io_.restart();
      io_.run_for(std::chrono::seconds(1));
    }
    return got.value_or("");
  }

  boost::asio::io_context io_;
  std::optional<boost::asio::ip::tcp::socket> reader_;
  std::optional<boost::asio::ip::tcp::socket> writer_;
  std::array<char, 256> buffer_{};
};

TEST_F(DrainingTcpReadTest, DataAndFinTogetherStillEndInEof) {
  boost::asio::write(*writer_, boost::asio::buffer(std::string("last words")));
  writer_->shutdown(boost::asio::socket_base::shutdown_send);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // both queued before the read
  auto data = readOnce(std::chrono::seconds(2));
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(data->second, "last words");
  auto end = readOnce(std::chrono::seconds(2));
  ASSERT_TRUE(end.has_value()) << "the pending FIN was not read: a short read hid it";
  EXPECT_EQ(end->first, boost::asio::error::eof);
}

TEST_F(DrainingTcpReadTest, DrainedSocketWaitsForTheNextBytes) {
  boost::asio::write(*writer_, boost::asio::buffer(std::string("one")));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto first = readOnce(std::chrono::seconds(2));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->second, "one");
  EXPECT_FALSE(readOnce(std::chrono::milliseconds(50)).has_value());
  EXPECT_EQ(readWhileSending("two"), "two");
}

// The non-blocking read (the handshake's first read, the relay's read behind a full landing
// slot) leaves the same mark for the next asynchronous read.
#if WSGATE_ASIO_INTERNALS
bool mayTryAtOnce(boost::asio::ip::tcp::socket& socket) {
  using Impl = reactor::ImplementationOf<boost::asio::ip::tcp::socket>;
  return reactor::trySpeculative(Impl::get(socket).reactor_data_)[reactor::ad::reactor::read_op];
}
#else
// Asio's stock reads keep no mark: they always try first.
bool mayTryAtOnce(boost::asio::ip::tcp::socket&) { return true; }
#endif

TEST_F(DrainingTcpReadTest, ReadNowMarksTheSocketDrainedOnlyWhenNothingIsLeft) {
#if !WSGATE_ASIO_INTERNALS
  GTEST_SKIP() << "built with Asio's stock reads (WSGATE_ASIO_INTERNALS off): they leave no "
                  "drained mark";
#endif
  boost::asio::write(*writer_, boost::asio::buffer(std::string("0123456789")));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  boost::system::error_code ec;
  EXPECT_EQ(drainingReadNow(*reader_, boost::asio::buffer(buffer_.data(), 4), ec), 4u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(mayTryAtOnce(*reader_)) << "six bytes are still queued";
  EXPECT_EQ(drainingReadNow(*reader_, boost::asio::buffer(buffer_), ec), 6u);
  EXPECT_EQ(std::string(buffer_.data(), 6), "456789");
  EXPECT_FALSE(ec);
  EXPECT_FALSE(mayTryAtOnce(*reader_)) << "the kernel reported nothing left";
  EXPECT_EQ(drainingReadNow(*reader_, boost::asio::buffer(buffer_), ec), 0u);
  EXPECT_EQ(ec, boost::asio::error::would_block);
  EXPECT_EQ(readWhileSending("next"), "next") << "the next read waits for epoll, then reads";
}

TEST_F(DrainingTcpReadTest, ReadNowLeavesAPendingFinToTheNextRead) {
  boost::asio::write(*writer_, boost::asio::buffer(std::string("bye")));
  writer_->shutdown(boost::asio::socket_base::shutdown_send);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  boost::system::error_code ec;
  EXPECT_EQ(drainingReadNow(*reader_, boost::asio::buffer(buffer_), ec), 3u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(mayTryAtOnce(*reader_)) << "a FIN is pending: the socket is not drained";
  auto end = readOnce(std::chrono::seconds(2));
  ASSERT_TRUE(end.has_value()) << "the pending FIN was not read";
  EXPECT_EQ(end->first, boost::asio::error::eof);
}

}  // namespace
}  // namespace wsgate::gateway
