// Relay reads that leave what they return in the kernel's receive queue until a later read.
//
// Why: Linux acknowledges at once, from inside recv, when a read empties the receive queue and
// two or more small pushed segments came in since the last ACK. A WebSocket peer sends each
// small message as such a segment, so on a busy flow many reads each cost a pure ACK segment:
// at 64 B, a fifth of the relay's CPU on loopback, where the sender also runs the receiver's
// side of the stack. The ACK is not needed there: bytes going back on the same socket carry it,
// and if none do, the delayed-ACK timer sends it. A read that leaves bytes queued is not
// acknowledged at once. So while a flow's reads are small and answers go back on the socket
// between them, its reads peek (MSG_PEEK): the bytes are relayed and stay queued, and the
// socket's peek offset (SO_PEEK_OFF) starts the next peek after them. Once kHoldAtMost bytes
// are held, one ordinary read takes them (into a scratch buffer) together with the new ones.
// Bulk flows read as before: the kernel acknowledges them by size, not by push. So do flows
// that only send to the gateway, and kernels without peek offsets for TCP (before 6.10).
//
// Held bytes must be released before the descriptor closes: Linux answers a close with unread
// bytes by a reset, not a FIN. Plain TCP only: a TLS stream reads through its own layer.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstddef>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include "io/draining_read.h"
#include "io/reactor_op.h"

namespace wsgate::gateway {

class HeldReads {
 public:
  static constexpr size_t kHoldAtMost = 1024;
  // What the kernel pushes and acknowledges at once: segments under its default MSS (536 B).
  static constexpr size_t kSmallRead = 512;
  // A session that ends after a read or two (a handshake, a close) never holds, so never pays
  // for the setsockopt and the release.
  static constexpr unsigned kSmallReadsBeforeHolding = 2;
  // Reads without an answer on the socket before holding stops: a flow that only sends to the
  // gateway gets its ACKs from reads again, as a peer that waits for them (Nagle) expects.
  static constexpr unsigned kReadsPerAnswer = 16;
  // The held bytes an ordinary read takes back; more than kHoldAtMost, as the last peek may
  // overshoot it. Beyond this a separate discard releases them.
  static constexpr size_t kScratchBytes = 4096;

  // A reactor::Op perform: one non-blocking read of new bytes into `buffer`. done_and_exhausted
  // when nothing new is left (or at end of stream), done when more is, not_done when nothing
  // new was there.
  reactor::Status read(int fd, boost::asio::mutable_buffer buffer, boost::system::error_code& ec,
                       size_t& transferred) {
    for (;;) {
      int left = -1;
      size_t fresh = 0;
      if (holdsNext(fd)) {
        iovec iov{buffer.data(), buffer.size()};
        const ssize_t n = recvReportingLeft(fd, &iov, 1, MSG_PEEK, left);
        if (n <= 0) return endOfRead(n, buffer.size() != 0, ec);
        fresh = static_cast<size_t>(n);
        held_ += fresh;
      } else {
        if (held_ > kScratchBytes) release(fd);
        std::array<iovec, 2> iov{{{scratch().data(), held_}, {buffer.data(), buffer.size()}}};
        const size_t first = held_ == 0 ? 1 : 0;
        const ssize_t n = recvReportingLeft(fd, &iov[first], iov.size() - first, 0, left);
        if (n <= 0) return endOfRead(n, buffer.size() != 0, ec);
        const auto got = static_cast<size_t>(n);
        if (got <= held_) {
          // Nothing new: the queue is empty, or something stops reads short of the new bytes
          // (a pending FIN, urgent data) and the next read shows it.
          held_ -= got;
          if (held_ == 0 && left == 0) return reactor::Status::not_done;
          continue;
        }
        fresh = got - held_;
        held_ = 0;
      }
      small_reads_ = fresh < kSmallRead ? std::min(small_reads_ + 1, kSmallReadsBeforeHolding) : 0;
      reads_since_answer_ = std::min(reads_since_answer_ + 1, kReadsPerAnswer);
      transferred = fresh;
      // `left` counts the held bytes too (and one more for a pending FIN).
      return left == static_cast<int>(held_) ? reactor::Status::done_and_exhausted
                                             : reactor::Status::done;
    }
  }

  // Bytes went out on this socket, and with them the ACK of all it had received.
  void noteAnswer() { reads_since_answer_ = 0; }

  // Takes the held bytes off the queue: before the descriptor closes (see above).
  void release(int fd) {
    if (held_ != 0) ::recv(fd, nullptr, held_, MSG_TRUNC | MSG_DONTWAIT);
    held_ = 0;
    small_reads_ = 0;
  }

  size_t held() const { return held_; }

 private:
  bool holdsNext(int fd) {
    if (small_reads_ < kSmallReadsBeforeHolding || held_ >= kHoldAtMost ||
        reads_since_answer_ >= kReadsPerAnswer) {
      return false;
    }
    if (peek_offset_set_) return true;
    if (kernelLacksPeekOffsets()) return false;
    const int from_start = 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &from_start, sizeof from_start) != 0) {
      kernelLacksPeekOffsets() = true;
      return false;
    }
    peek_offset_set_ = true;
    return true;
  }
  // One failed setsockopt answers for the whole kernel; per worker thread, so nothing shared.
  static bool& kernelLacksPeekOffsets() {
    static thread_local bool lacks = false;
    return lacks;
  }
  // Where an ordinary read puts the held bytes it takes back; never read.
  static std::array<char, kScratchBytes>& scratch() {
    static thread_local std::array<char, kScratchBytes> bytes;
    return bytes;
  }

  size_t held_ = 0;
  unsigned small_reads_ = 0;
  unsigned reads_since_answer_ = kReadsPerAnswer;
  bool peek_offset_set_ = false;
};

// A reactor::Op perform that reads `buffer`'s worth through `reads`.
struct HeldRead {
  HeldReads* reads;
  boost::asio::mutable_buffer buffer;
  reactor::Status operator()(reactor::socket_type fd, boost::system::error_code& ec,
                             size_t& transferred) const {
    return reads->read(fd, buffer, ec, transferred);
  }
};

}  // namespace wsgate::gateway
