// The TLS transport of a Stream (io/stream.h): OpenSSL 3 straight on the same non-blocking
// descriptor (a socket BIO: one system call per attempt, no copies of its own). Asio's
// ssl::stream is not used: it keeps two 17 KiB buffers and a BIO pair per stream.
//
// What it must get right:
// - A read reports the source exhausted only when OpenSSL asked for more bytes and the kernel
//   had none (SSL_ERROR_WANT_READ). A read that handed out part of a record leaves the rest in
//   OpenSSL, where no epoll edge will announce it: the next read then tries at once.
// - A read may need the socket writable (a key update answered, SSL_ERROR_WANT_WRITE) and a write
//   readable: each waits for what OpenSSL asked for, then tries again.
// - Several parts (a held header, a payload, an injected close) go out as one record where they
//   fit in one; a write that could not finish is retried with the same bytes, from wherever the
//   caller keeps them (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
// Plain legs keep their TCP_INQ reads (plain_transport.h); TLS legs do not use them.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "io/reactor_op.h"
#include "io/tls_error.h"

namespace wsgate::gateway {

using Socket = boost::asio::generic::stream_protocol::socket;

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// One attempt of an OpenSSL call on a non-blocking descriptor.
enum class TlsStep : uint8_t {
  kDone,       // finished: `ec` says how
  kWantRead,   // try again once readable
  kWantWrite,  // try again once writable
};

class TlsTransport {
 public:
  // `ssl` is a fresh session (server or client side); it is bound to the socket here.
  TlsTransport(Socket socket, SslPtr ssl);
  TlsTransport(boost::asio::ip::tcp::socket socket, SslPtr ssl)
      : TlsTransport(Socket(std::move(socket)), std::move(ssl)) {}
  TlsTransport(TlsTransport&&) = default;
  TlsTransport& operator=(TlsTransport&&) = default;

  // The TLS handshake, as server or client: `handler(error_code)`. The caller bounds it in time
  // (cancel() ends the wait).
  template <typename Handler>
  void asyncHandshake(Handler handler) {
    drive([ssl = ssl_.get()](boost::system::error_code& ec, size_t&) {
      return handshakeStep(ssl, ec);
    },
          [handler = std::move(handler)](const boost::system::error_code& ec, size_t) mutable {
            handler(ec);
          });
  }

  template <typename Handler>
  void asyncReadSome(boost::asio::mutable_buffer buffer, Handler&& handler) {
    auto perform = [ssl = ssl_.get(), buffer](reactor::socket_type, boost::system::error_code& ec,
                                              size_t& n) { return readAttempt(ssl, buffer, ec, n); };
    reactor::startRead(
        socket_, std::move(perform),
        [this, buffer, handler = std::forward<Handler>(handler)](
            const boost::system::error_code& ec, size_t n) mutable {
          if (ec != tlsReadWantsWrite()) return handler(ec, n);
          // A read that must write first (a key update to answer): once writable, read again.
          socket_.async_wait(Socket::wait_write,
                             [this, buffer, handler = std::move(handler)](
                                 const boost::system::error_code& wait_ec) mutable {
                               if (wait_ec) return handler(wait_ec, size_t{0});
                               asyncReadSome(buffer, std::move(handler));
                             });
        });
  }

  template <typename Buffers, typename Handler>
  void asyncWriteSome(const Buffers& buffers, Handler&& handler) {
    const boost::asio::const_buffer first = *boost::asio::buffer_sequence_begin(buffers);
    drive([ssl = ssl_.get(), first](boost::system::error_code& ec, size_t& n) {
      return writeStep(ssl, first.data(), first.size(), ec, n);
    },
          std::forward<Handler>(handler));
  }

  size_t readSome(boost::asio::mutable_buffer buffer, boost::system::error_code& ec);
  size_t writeSome(std::span<const boost::asio::const_buffer> parts,
                   boost::system::error_code& ec, bool more = false);

  void cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  // Sends close_notify when the session is in a state to (best effort, never waits), then
  // releases the descriptor.
  void close();
  void shutdownSend();
  void push() {}  // writes never hold bytes back (`more` is not used over TLS)
  bool mayHaveUnread();
  bool peerEnded(boost::asio::mutable_buffer scratch);
  Socket& socket() { return socket_; }
  SSL* ssl() { return ssl_.get(); }

  // One reactor attempt of a read: as many records' plaintext as fit in `buffer` and OpenSSL can
  // hand out now. not_done when there was none (the kernel had nothing either);
  // done_and_exhausted when it stopped because OpenSSL asked the kernel for more and there was
  // none, so the next read waits for epoll's edge; done when the buffer filled, or a failure or
  // the end of the stream (`ec`, or tlsReadWantsWrite()) comes with no plaintext before it.
  static reactor::Status readAttempt(SSL* ssl, boost::asio::mutable_buffer buffer,
                                     boost::system::error_code& ec, size_t& n);
  // One OpenSSL call each; `ec` set when kDone ends in failure (tls_error.h maps the errors).
  static TlsStep handshakeStep(SSL* ssl, boost::system::error_code& ec);
  static TlsStep readStep(SSL* ssl, boost::asio::mutable_buffer buffer,
                          boost::system::error_code& ec, size_t& n);
  static TlsStep writeStep(SSL* ssl, const void* data, size_t size, boost::system::error_code& ec,
                           size_t& n);

 private:
  // Runs `step` until it is done, waiting for readability or writability as OpenSSL asks; the
  // handler is posted, never called from inside the initiating call.
  template <typename Step, typename Handler>
  void drive(Step step, Handler handler) {
    boost::system::error_code ec;
    size_t n = 0;
    const TlsStep status = step(ec, n);
    if (status == TlsStep::kDone) {
      return boost::asio::post(socket_.get_executor(),
                               boost::asio::append(std::move(handler), ec, n));
    }
    socket_.async_wait(status == TlsStep::kWantRead ? Socket::wait_read : Socket::wait_write,
                       [this, step = std::move(step), handler = std::move(handler)](
                           const boost::system::error_code& wait_ec) mutable {
                         if (wait_ec) return handler(wait_ec, size_t{0});
                         drive(std::move(step), std::move(handler));
                       });
  }

  Socket socket_;
  SslPtr ssl_;
};

}  // namespace wsgate::gateway
