// One side of a session: a connected byte stream, whichever transport carries it. The session,
// the handshake, the filters and the metrics see only this; the transports (plain_transport.h,
// tls_transport.h) are the only code that touches the descriptor.
//
// Every transport offers the same small set, which Stream forwards:
//   asyncReadSome(buffer, handler)   reads what is there, or waits for it; handler(ec, n)
//   asyncWriteSome(buffers, handler) writes what it can once writable; handler(ec, n)
//   readSome(buffer, ec)             non-blocking; would_block when nothing is there, eof at end
//   writeSome(parts, ec, more)       non-blocking; several parts go out together where they can;
//                                    `more`: the stream closes right after
//   push()                           sends at once what a `more` write left for the close
//   cancel(), close(), shutdownSend(), mayHaveUnread(), peerEnded(scratch), socket()
// A read reports the source exhausted only when neither the kernel nor the transport holds
// bytes (a TLS record partly handed out is still "readable"): the next read then waits for
// epoll's edge. Not thread-safe: a stream lives on its worker's thread.
#pragma once

#include <span>
#include <utility>
#include <variant>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>

#include "io/plain_transport.h"
#include "io/tls_transport.h"

namespace wsgate::gateway {

class Stream {
  std::variant<PlainTransport, TlsTransport> transport_;

  // Forwards to whichever transport this stream has (declared first: the members below deduce
  // their return types from it).
  template <typename F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), transport_);
  }

 public:
  explicit Stream(Socket socket) : transport_(PlainTransport(std::move(socket))) {}
  explicit Stream(boost::asio::ip::tcp::socket socket)
      : transport_(PlainTransport(std::move(socket))) {}
  explicit Stream(TlsTransport tls) : transport_(std::move(tls)) {}
  Stream(Stream&&) = default;
  Stream& operator=(Stream&&) = default;

  // Async stream concept, for the HTTP handshake phase (Beast reads and writes through these).
  using executor_type = Socket::executor_type;
  executor_type get_executor() { return socket().get_executor(); }
  // Reads into the first buffer of `buffers` (read_some may read less than all of them).
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const Buffers& sequence) {
          asyncReadSome(*boost::asio::buffer_sequence_begin(sequence), std::move(handler));
        },
        token, buffers);
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const Buffers& sequence) {
          asyncWriteSome(sequence, std::move(handler));
        },
        token, buffers);
  }

  template <typename Handler>
  void asyncReadSome(boost::asio::mutable_buffer buffer, Handler&& handler) {
    visit([&](auto& t) { t.asyncReadSome(buffer, std::forward<Handler>(handler)); });
  }
  template <typename Buffers, typename Handler>
  void asyncWriteSome(const Buffers& buffers, Handler&& handler) {
    visit([&](auto& t) { t.asyncWriteSome(buffers, std::forward<Handler>(handler)); });
  }
  size_t readSome(boost::asio::mutable_buffer buffer, boost::system::error_code& ec) {
    return visit([&](auto& t) { return t.readSome(buffer, ec); });
  }
  size_t writeSome(std::span<const boost::asio::const_buffer> parts,
                   boost::system::error_code& ec, bool more = false) {
    return visit([&](auto& t) { return t.writeSome(parts, ec, more); });
  }

  void cancel() {
    visit([](auto& t) { t.cancel(); });
  }
  // Releases the descriptor; the kernel still sends what was written, then FIN.
  void close() {
    visit([](auto& t) { t.close(); });
  }
  bool isOpen() { return socket().is_open(); }
  // A write with `more` whose stream is not closed after all: what it left for the FIN goes now.
  void push() {
    visit([](auto& t) { t.push(); });
  }
  // Sends the end of the stream once what was written has gone; the stream can still be read.
  void shutdownSend() {
    visit([](auto& t) { t.shutdownSend(); });
  }
  // Whether the peer sent bytes nobody read; closing then sends a reset, not a FIN (see
  // lingering_close.h).
  bool mayHaveUnread() {
    return visit([](auto& t) { return t.mayHaveUnread(); });
  }
  // After a read: whether the peer has ended its side of the connection (or reset it); bytes
  // read meanwhile into `scratch` are dropped: the caller has seen the peer's last frame.
  bool peerEnded(boost::asio::mutable_buffer scratch) {
    return visit([&](auto& t) { return t.peerEnded(scratch); });
  }
  // The TLS session of a TLS stream, else null.
  SSL* tls() {
    auto* transport = std::get_if<TlsTransport>(&transport_);
    return transport ? transport->ssl() : nullptr;
  }
  // The TLS handshake of a TLS stream, as an Asio operation: `void(error_code)`; a plain
  // stream completes at once. Bounded by the caller (cancel() ends it).
  template <typename Token>
  auto async_tls_handshake(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          if (auto* transport = std::get_if<TlsTransport>(&transport_)) {
            return transport->asyncHandshake(std::move(handler));
          }
          boost::asio::post(get_executor(),
                            boost::asio::append(std::move(handler), boost::system::error_code()));
        },
        token);
  }
  // The descriptor itself, for the I/O layer only (a lingering close discards raw bytes).
  Socket& socket() {
    return visit([](auto& t) -> Socket& { return t.socket(); });
  }
};

}  // namespace wsgate::gateway
