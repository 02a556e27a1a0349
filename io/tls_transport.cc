#include "io/tls_transport.h"

#include <openssl/err.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <boost/asio/error.hpp>

#include "io/draining_read.h"

namespace wsgate::gateway {

namespace {

using boost::system::error_code;

// A TLS record carries at most this much plaintext: parts smaller than that are gathered into
// one record instead of one record (and one header and tag) each.
constexpr size_t kRecordPlaintext = 16 * 1024;

// What an OpenSSL call that returned `ret` asks for. A failed session is marked shut, so that no
// close_notify is attempted on it later (OpenSSL forbids SSL_shutdown after a fatal error).
TlsStep outcome(SSL* ssl, int ret, error_code& ec) {
  const int error = SSL_get_error(ssl, ret);
  switch (error) {
    case SSL_ERROR_WANT_READ:
      return TlsStep::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsStep::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:  // close_notify, or an end of stream (IGNORE_UNEXPECTED_EOF)
      ec = boost::asio::error::eof;
      return TlsStep::kDone;
    case SSL_ERROR_SYSCALL: {
      const int saved = errno;
      if (const unsigned long packed = ERR_peek_last_error(); packed != 0) {
        ec = opensslError(packed);
      } else if (saved == 0) {
        ec = boost::asio::error::eof;  // the peer left without close_notify
      } else {
        ec = error_code(saved, boost::system::system_category());
      }
      break;
    }
    default:
      ec = opensslError(ERR_peek_last_error());
      break;
  }
  // The failure lives in `ec` now. Left on the worker thread's queue, it would be read by the
  // next OpenSSL user there that does not clear first (SSL_get_error reads the queue before the
  // return value; ERR_get_error returns the oldest entry).
  ERR_clear_error();
  SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  return TlsStep::kDone;
}

}  // namespace

TlsTransport::TlsTransport(Socket socket, SslPtr ssl)
    : socket_(std::move(socket)), ssl_(std::move(ssl)) {
  // Asio owns the descriptor: the BIO must not close it.
  SSL_set_fd(ssl_.get(), socket_.native_handle());
}

TlsStep TlsTransport::handshakeStep(SSL* ssl, error_code& ec) {
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl);
  if (ret == 1) return TlsStep::kDone;
  return outcome(ssl, ret, ec);
}

TlsStep TlsTransport::readStep(SSL* ssl, boost::asio::mutable_buffer buffer, error_code& ec,
                               size_t& n) {
  ERR_clear_error();
  size_t got = 0;
  if (SSL_read_ex(ssl, buffer.data(), buffer.size(), &got) == 1) {
    n = got;
    return TlsStep::kDone;
  }
  return outcome(ssl, 0, ec);
}

TlsStep TlsTransport::writeStep(SSL* ssl, const void* data, size_t size, error_code& ec,
                                size_t& n) {
  if (size == 0) return TlsStep::kDone;
  ERR_clear_error();
  size_t written = 0;
  if (SSL_write_ex(ssl, data, size, &written) == 1) {
    n = written;
    return TlsStep::kDone;
  }
  return outcome(ssl, 0, ec);
}

// Records are handed out one per SSL_read: taking every one that is there makes one wake-up's
// messages one write onward, not one each, and ends on the attempt that proves the source
// exhausted, which spares the next read an attempt that finds nothing.
reactor::Status TlsTransport::readAttempt(SSL* ssl, boost::asio::mutable_buffer buffer,
                                          error_code& ec, size_t& n) {
  auto* const into = static_cast<uint8_t*>(buffer.data());
  size_t total = 0;
  while (total < buffer.size()) {
    size_t got = 0;
    error_code step_ec;
    const TlsStep step =
        readStep(ssl, boost::asio::buffer(into + total, buffer.size() - total), step_ec, got);
    if (step == TlsStep::kDone && !step_ec) {
      total += got;
      continue;
    }
    if (total > 0) {
      // What stopped it (the end of the stream, a failure) stays in OpenSSL for the next read.
      n = total;
      return step == TlsStep::kWantRead ? reactor::Status::done_and_exhausted
                                        : reactor::Status::done;
    }
    switch (step) {
      case TlsStep::kWantRead:
        return reactor::Status::not_done;
      case TlsStep::kWantWrite:
        ec = tlsReadWantsWrite();
        return reactor::Status::done;
      case TlsStep::kDone:
        ec = step_ec;
        return reactor::Status::done;
    }
  }
  n = total;
  return reactor::Status::done;
}

size_t TlsTransport::readSome(boost::asio::mutable_buffer buffer, error_code& ec) {
  return readNowWith(
      socket_,
      [ssl = ssl_.get(), buffer](reactor::socket_type, error_code& error, size_t& n) {
        const reactor::Status status = readAttempt(ssl, buffer, error, n);
        // A read that must write first: the next asynchronous read tries again and waits.
        if (error == tlsReadWantsWrite()) error = boost::asio::error::would_block;
        return status;
      },
      ec);
}

// Writes the parts in order. Runs of parts smaller than a record are gathered into one record;
// a part of a record or more goes out from where it lies. Stops at the first write the socket
// could not take: the caller keeps the rest and retries with it, which is the retry OpenSSL
// expects (the same bytes first, from a buffer that may have moved).
size_t TlsTransport::writeSome(std::span<const boost::asio::const_buffer> parts, error_code& ec,
                               bool /*more*/) {
  thread_local std::array<uint8_t, kRecordPlaintext> gathered;
  size_t total = 0;
  size_t part = 0;
  size_t offset = 0;  // into parts[part]
  while (part < parts.size()) {
    const auto* from = static_cast<const uint8_t*>(parts[part].data()) + offset;
    const size_t left = parts[part].size() - offset;
    if (left == 0) {
      ++part;
      offset = 0;
      continue;
    }
    const void* data = from;
    size_t size = left;
    if (left < kRecordPlaintext && part + 1 < parts.size()) {
      size = 0;
      size_t p = part;
      size_t o = offset;
      while (p < parts.size() && size < gathered.size()) {
        const size_t take = std::min(parts[p].size() - o, gathered.size() - size);
        std::memcpy(gathered.data() + size, static_cast<const uint8_t*>(parts[p].data()) + o,
                    take);
        size += take;
        o += take;
        if (o == parts[p].size()) {
          ++p;
          o = 0;
        }
      }
      data = gathered.data();
    }
    size_t n = 0;
    const TlsStep step = writeStep(ssl_.get(), data, size, ec, n);
    if (step != TlsStep::kDone) {
      if (total == 0) ec = boost::asio::error::would_block;
      return total;
    }
    if (ec) return total;
    total += n;
    // Advance over what went out.
    size_t advance = n;
    while (advance > 0 && part < parts.size()) {
      const size_t in_part = parts[part].size() - offset;
      if (advance < in_part) {
        offset += advance;
        advance = 0;
      } else {
        advance -= in_part;
        ++part;
        offset = 0;
      }
    }
    // n < size is no sign of a full socket: with SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write_ex
    // returns after each record it wrote. Stopping there made every frame over 32 KiB (a part
    // over 16 KiB) a short write, which the session takes for backpressure (a pause counted, the
    // rest copied aside) while the socket had room. Go on: only kWantWrite above ends the write.
  }
  return total;
}

void TlsTransport::close() {
  if (socket_.is_open() && SSL_is_init_finished(ssl_.get()) &&
      (SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN) == 0) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // queues close_notify; a socket that cannot take it loses it
    ERR_clear_error();
  }
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void TlsTransport::shutdownSend() {
  if (SSL_is_init_finished(ssl_.get()) &&
      (SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN) == 0) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }
  boost::system::error_code ignored;
  socket_.shutdown(Socket::shutdown_send, ignored);
}

bool TlsTransport::mayHaveUnread() {
  if (!socket_.is_open()) return false;
  int queued = 0;
  return ::ioctl(socket_.native_handle(), FIONREAD, &queued) != 0 || queued > 0;
}

bool TlsTransport::peerEnded(boost::asio::mutable_buffer scratch) {
  if (!socket_.is_open() || reactor::knownDrained(socket_)) return false;
  for (int i = 0; i < 4; ++i) {
    error_code ec;
    readSome(scratch, ec);
    if (ec == boost::asio::error::would_block) return false;
    if (ec) return true;
  }
  return false;
}

}  // namespace wsgate::gateway
