// Closing a TCP socket with unread bytes in its receive queue makes Linux send a reset instead of
// a FIN and drop what is still queued for sending (a close frame written with MSG_MORE), and
// some peers discard on a reset what reached them but was not read yet. So when the peer may
// have sent more (it often does: a frame behind its close), the stream sends its FIN first, then
// reads and drops what keeps coming until the peer closes, bounded in time and bytes, and only
// then closes (nginx's lingering close). With nothing unread the descriptor closes at once, as
// before. Worker thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include <boost/asio/steady_timer.hpp>

#include "io/draining_read.h"
#include "io/stream.h"

namespace wsgate::gateway {

class LingeringClose : public std::enable_shared_from_this<LingeringClose> {
 public:
  // Long enough for a peer that answers a close to see it and close; short enough that a peer
  // that keeps sending cannot hold the descriptor.
  static constexpr std::chrono::milliseconds kTime{1500};
  static constexpr size_t kBytes = 64 * 1024;

  // Closes `stream` (which must have no read or write outstanding), lingering only if bytes
  // may be unread. Leaves `stream` closed.
  static void close(Stream& stream) {
    if (!stream.mayHaveUnread()) return stream.close();
    stream.shutdownSend();
    std::make_shared<LingeringClose>(std::move(stream))->start();
  }

  explicit LingeringClose(Stream stream)
      : stream_(std::move(stream)), timer_(stream_.get_executor()) {}

 private:
  void start() {
    timer_.expires_after(kTime);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->stream_.close();  // the pending read ends with it
    });
    read();
  }

  void read() {
    asyncDrainingRead(stream_.socket(), boost::asio::buffer(sink_),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                        self->discarded_ += n;
                        if (!ec && self->discarded_ < kBytes) return self->read();
                        self->timer_.cancel();
                        self->stream_.close();
                      });
  }

  Stream stream_;
  boost::asio::steady_timer timer_;
  std::array<uint8_t, 4096> sink_{};
  size_t discarded_ = 0;
};

}  // namespace wsgate::gateway
