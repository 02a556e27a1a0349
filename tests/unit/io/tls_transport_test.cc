// The TLS transport (io/tls_transport.h) and the server contexts its sessions come from
// (io/tls_context.h), on real loopback sockets. The gateway's TlsTransport sits on the accepted
// end, driven by an io_context on the test thread; on the other end a plain OpenSSL client
// works on memory BIOs, and the test moves its bytes to and from the socket itself, so that it
// can see the records on the wire. Keys and certificates (EC P-256, self-signed) are made here.
// Every wait is bounded: a stalled flow fails the test instead of hanging it.
#include "io/tls_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.h"
#include "io/draining_read.h"
#include "io/tls_context.h"
#include "io/tls_error.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

Clock::time_point in(std::chrono::milliseconds limit) { return Clock::now() + limit; }

int millisecondsLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<long>(0, left.count()));
}

// ---- Keys and certificates.

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

struct Credentials {
  PkeyPtr key;
  X509Ptr cert;
  std::string cert_pem;
  std::string key_pem;
};

template <typename Write>
std::string pemOf(Write write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  EXPECT_EQ(write(bio.get()), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// A fresh EC P-256 key and a self-signed certificate for it, valid for a day.
Credentials selfSigned(const std::string& common_name) {
  static long serial = 1;
  Credentials out;
  out.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, out.key.get());
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  EXPECT_GT(X509_sign(cert, out.key.get(), EVP_sha256()), 0);
  out.cert_pem = pemOf([&](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
  out.key_pem = pemOf([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, out.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return out;
}

const Credentials& gatewayCredentials() {
  static const Credentials credentials = selfSigned("gateway.test");
  return credentials;
}

config::TlsCertificate certificate(const Credentials& credentials,
                                   std::vector<std::string> server_names = {}) {
  config::TlsCertificate out;
  out.cert_file = "gateway.crt";
  out.key_file = "gateway.key";
  out.server_names = std::move(server_names);
  out.chain_pem = credentials.cert_pem;
  out.key_pem = credentials.key_pem;
  return out;
}

config::ListenerTls listenerTls() {
  config::ListenerTls settings;
  settings.certificates.push_back(certificate(gatewayCredentials()));
  return settings;
}

// The common name of `cert`, or "" without one.
std::string commonName(X509* cert) {
  if (cert == nullptr) return {};
  std::array<char, 256> text{};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, text.data(),
                            static_cast<int>(text.size()));
  return text.data();
}

// ---- Bytes.

// Bytes that tell their own place in the stream: 32-bit word numbers, little-endian.
std::string numbered(size_t size, uint32_t first_word = 0) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    const uint32_t word = first_word + static_cast<uint32_t>(i / 4);
    out[i] = static_cast<char>((word >> (8 * (i % 4))) & 0xff);
  }
  return out;
}

// What is left of `parts` after the first `skip` bytes, as the transport takes them.
std::vector<boost::asio::const_buffer> partsAfter(const std::vector<std::string_view>& parts,
                                                  size_t skip) {
  std::vector<boost::asio::const_buffer> out;
  for (std::string_view part : parts) {
    const size_t drop = std::min(skip, part.size());
    skip -= drop;
    if (drop < part.size()) out.emplace_back(part.data() + drop, part.size() - drop);
  }
  return out;
}

// The TLS records of `raw`, whole records only; `rest` gets what is left of an incomplete one.
std::vector<std::string> splitRecords(std::string_view raw, std::string* rest = nullptr) {
  std::vector<std::string> records;
  while (raw.size() >= 5) {
    const size_t length = (static_cast<uint8_t>(raw[3]) << 8) | static_cast<uint8_t>(raw[4]);
    if (raw.size() < 5 + length) break;
    records.emplace_back(raw.substr(0, 5 + length));
    raw.remove_prefix(5 + length);
  }
  if (rest != nullptr) *rest = std::string(raw);
  return records;
}

// ---- The two ends.

// A connected loopback TCP pair: `gateway` is the accepted end, `client` the connecting one.
// Buffer sizes are set before the connection exists, so the windows are sized from them.
struct TcpPair {
  int gateway = -1;
  int client = -1;
  TcpPair(int gateway_send_buffer, int client_receive_buffer) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    if (gateway_send_buffer > 0) {
      ::setsockopt(listener, SOL_SOCKET, SO_SNDBUF, &gateway_send_buffer,
                   sizeof gateway_send_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
    client = ::socket(AF_INET, SOCK_STREAM, 0);
    if (client_receive_buffer > 0) {
      ::setsockopt(client, SOL_SOCKET, SO_RCVBUF, &client_receive_buffer,
                   sizeof client_receive_buffer);
    }
    EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), length), 0);
    // Non-blocking from the start, as the listener accepts: OpenSSL reads it straight.
    gateway = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
    ::close(listener);
    if (gateway_send_buffer > 0) {
      ::setsockopt(gateway, SOL_SOCKET, SO_SNDBUF, &gateway_send_buffer,
                   sizeof gateway_send_buffer);
    }
    const int on = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(gateway, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    reportBytesLeft(gateway);  // as the listener sets it; TLS reads do not rely on it
  }
  ~TcpPair() {
    if (gateway >= 0) ::close(gateway);
    if (client >= 0) ::close(client);
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
};

struct ClientOptions {
  int max_version = 0;      // 0: OpenSSL's highest
  std::string server_name;  // SNI; empty: none
};

// An OpenSSL client on memory BIOs: the SSL never touches the socket; flush() and receive() move
// its bytes, so a test can also take the raw bytes off the socket and look at them first.
// Used from one thread at a time.
class Client {
 public:
  Client(int fd, const ClientOptions& options) : fd_(fd) {
    context_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_verify(context_.get(), SSL_VERIFY_NONE, nullptr);
    if (options.max_version != 0) {
      SSL_CTX_set_max_proto_version(context_.get(), options.max_version);
    }
    ssl_.reset(SSL_new(context_.get()));
    SSL_set_connect_state(ssl_.get());
    if (!options.server_name.empty()) {
      SSL_set_tlsext_host_name(ssl_.get(), options.server_name.c_str());
    }
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_.get(), in_, out_);  // the SSL owns them now
    SSL_set_msg_callback(ssl_.get(), onMessage);
    SSL_set_msg_callback_arg(ssl_.get(), this);
  }

  SSL* ssl() { return ssl_.get(); }
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }
  // KeyUpdate messages the gateway sent.
  int keyUpdatesReceived() const { return key_updates_received_; }

  bool handshake(Clock::time_point deadline) {
    for (;;) {
      ERR_clear_error();
      const int ret = SSL_do_handshake(ssl_.get());
      if (!flush(deadline)) return false;
      if (ret == 1) return true;
      if (!wantsRead(ret) || !receive(deadline)) return false;
    }
  }

  // Encrypts `data` and sends it.
  bool write(std::string_view data, Clock::time_point deadline) {
    ERR_clear_error();
    size_t written = 0;
    if (SSL_write_ex(ssl_.get(), data.data(), data.size(), &written) != 1) {
      wantsRead(0);
      return false;
    }
    return flush(deadline);
  }

  // Reads until `size` bytes of plaintext came, the stream ended or the deadline passed.
  std::string read(size_t size, Clock::time_point deadline) {
    std::string out;
    std::array<char, 16 * 1024> chunk{};
    while (out.size() < size) {
      ERR_clear_error();
      size_t got = 0;
      if (SSL_read_ex(ssl_.get(), chunk.data(), chunk.size(), &got) == 1) {
        out.append(chunk.data(), got);
        continue;
      }
      if (!wantsRead(0) || !flush(deadline) || !receive(deadline)) break;
    }
    return out;
  }

  // Reads until the stream ends: SSL_get_error's answer then (SSL_ERROR_ZERO_RETURN after a
  // close_notify), or -1 if it did not end by the deadline. Plaintext read meanwhile goes to
  // `plaintext`.
  int readToEnd(Clock::time_point deadline, std::string& plaintext) {
    std::array<char, 16 * 1024> chunk{};
    for (;;) {
      ERR_clear_error();
      size_t got = 0;
      if (SSL_read_ex(ssl_.get(), chunk.data(), chunk.size(), &got) == 1) {
        plaintext.append(chunk.data(), got);
        continue;
      }
      const int error = SSL_get_error(ssl_.get(), 0);
      if (error != SSL_ERROR_WANT_READ) return error;
      if (!receive(deadline)) return -1;
    }
  }

  // The plaintext the bytes given so far decrypt to, without touching the socket.
  std::string plaintextSoFar() {
    std::string out;
    std::array<char, 32 * 1024> chunk{};
    for (;;) {
      ERR_clear_error();
      size_t got = 0;
      if (SSL_read_ex(ssl_.get(), chunk.data(), chunk.size(), &got) != 1) break;
      out.append(chunk.data(), got);
    }
    wantsRead(0);
    return out;
  }

  // Raw bytes off the socket, not given to the SSL: waits for the first, then takes more until
  // they end in a whole record and nothing more comes for `quiet`.
  std::string rawRecords(Clock::time_point deadline, std::chrono::milliseconds quiet = 50ms) {
    std::string raw;
    std::array<char, 64 * 1024> chunk{};
    for (;;) {
      std::string rest;
      const bool whole = !raw.empty() && (splitRecords(raw, &rest), rest.empty());
      pollfd p{fd_, POLLIN, 0};
      const int wait = whole ? static_cast<int>(quiet.count()) : millisecondsLeft(deadline);
      if (::poll(&p, 1, std::min(wait, millisecondsLeft(deadline))) != 1) return raw;
      const ssize_t n = ::recv(fd_, chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n <= 0) return raw;
      raw.append(chunk.data(), static_cast<size_t>(n));
    }
  }

  // Gives raw bytes (taken with rawRecords) to the SSL.
  void give(std::string_view raw) {
    ASSERT_EQ(BIO_write(in_, raw.data(), static_cast<int>(raw.size())),
              static_cast<int>(raw.size()));
  }

  // Sends what the SSL wrote.
  bool flush(Clock::time_point deadline) {
    std::array<char, 16 * 1024> chunk{};
    for (;;) {
      const int n = BIO_read(out_, chunk.data(), static_cast<int>(chunk.size()));
      if (n <= 0) return true;
      if (!sendAll(fd_, chunk.data(), static_cast<size_t>(n), deadline)) return false;
    }
  }

  // Waits for bytes on the socket and gives them to the SSL; false at the deadline, or when the
  // stream had already ended (the SSL has been told).
  bool receive(Clock::time_point deadline) {
    if (ended_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, millisecondsLeft(deadline)) != 1) {
      error_ = "nothing arrived in time";
      return false;
    }
    std::array<char, 64 * 1024> chunk{};
    const ssize_t n = ::recv(fd_, chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n > 0) {
      give({chunk.data(), static_cast<size_t>(n)});
    } else {
      ended_ = true;
      BIO_set_mem_eof_return(in_, 0);  // the SSL now reads the end of the stream
    }
    return true;
  }

  static bool sendAll(int fd, const char* data, size_t size, Clock::time_point deadline) {
    for (size_t sent = 0; sent < size;) {
      const ssize_t n = ::send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, millisecondsLeft(deadline)) != 1) return false;
    }
    return true;
  }

 private:
  // After a failed call: true for WANT_READ, else records why it failed.
  bool wantsRead(int ret) {
    const int error = SSL_get_error(ssl_.get(), ret);
    if (error == SSL_ERROR_WANT_READ) return true;
    std::array<char, 256> text{};
    ERR_error_string_n(ERR_peek_last_error(), text.data(), text.size());
    error_ = "SSL error " + std::to_string(error) + ": " + text.data();
    return false;
  }

  static void onMessage(int write_p, int, int content_type, const void* buf, size_t len, SSL*,
                        void* arg) {
    auto* self = static_cast<Client*>(arg);
    if (write_p == 0 && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        static_cast<const uint8_t*>(buf)[0] == SSL3_MT_KEY_UPDATE) {
      ++self->key_updates_received_;
    }
  }

  int fd_;
  SslCtxPtr context_;
  SslPtr ssl_;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  bool ended_ = false;
  std::string error_;
  int key_updates_received_ = 0;
};

// The outcome of one asynchronous operation of the gateway's transport.
struct Outcome {
  bool done = false;
  error_code ec;
  size_t n = 0;
};

// One connection: the gateway's transport on an io_context run by the test thread, the client
// on the other end.
struct SocketBuffers {
  int gateway_send = 0;    // SO_SNDBUF of the gateway's socket; 0: the system's
  int client_receive = 0;  // SO_RCVBUF of the client's socket
};

class Harness {
 public:
  explicit Harness(const config::ListenerTls& settings = listenerTls(),
                   const ClientOptions& options = {}, SocketBuffers buffers = {})
      : pair_(buffers.gateway_send, buffers.client_receive),
        context_(settings),
        gateway_(std::in_place,
                 boost::asio::ip::tcp::socket(io_, boost::asio::ip::tcp::v4(), pair_.gateway),
                 context_.newSession()),
        client_(pair_.client, options) {
    pair_.gateway = -1;  // the transport owns it now
  }

  TlsTransport& gateway() { return *gateway_; }
  Client& client() { return client_; }
  const ServerTlsContext& context() const { return context_; }

  // Runs the io_context until `done()` holds or `limit` passed; returns `done()`.
  template <typename Done>
  bool runUntil(Done done, std::chrono::milliseconds limit = 2000ms) {
    const auto deadline = in(limit);
    while (!done() && Clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(std::max(1, millisecondsLeft(deadline))));
    }
    return done();
  }

  // Runs the io_context for `time`: readiness events that arrive meanwhile are taken in by the
  // reactor, with no operation waiting for them.
  void settle(std::chrono::milliseconds time = 20ms) {
    boost::asio::steady_timer timer(io_, time);
    bool fired = false;
    timer.async_wait([&](const error_code&) { fired = true; });
    runUntil([&] { return fired; }, time + 1000ms);
  }

  // Both handshakes; the gateway's outcome in `gateway_ec`. The client runs on its own thread.
  bool handshake(error_code* gateway_ec = nullptr) {
    Outcome server;
    gateway_->asyncHandshake([&server](const error_code& ec) {
      server.done = true;
      server.ec = ec;
    });
    bool client_ok = false;
    std::thread client([&] { client_ok = client_.handshake(in(2000ms)); });
    runUntil([&] { return server.done; });
    // A failed gateway handshake may leave the client waiting: end its wait.
    if (!server.done || server.ec) gateway_->close();
    client.join();
    if (gateway_ec != nullptr) *gateway_ec = server.ec;
    EXPECT_TRUE(server.done) << "the gateway's handshake did not end";
    return server.done && !server.ec && client_ok;
  }

  // Starts a read of the gateway's transport; the outcome fills in when it completes.
  std::shared_ptr<Outcome> startRead(boost::asio::mutable_buffer buffer) {
    auto outcome = std::make_shared<Outcome>();
    gateway_->asyncReadSome(buffer, [outcome](const error_code& ec, size_t n) {
      outcome->done = true;
      outcome->ec = ec;
      outcome->n = n;
    });
    return outcome;
  }

  // An asynchronous read of the gateway, waited for up to `limit`.
  std::shared_ptr<Outcome> read(boost::asio::mutable_buffer buffer,
                                std::chrono::milliseconds limit = 1000ms) {
    auto outcome = startRead(buffer);
    runUntil([&] { return outcome->done; }, limit);
    return outcome;
  }

  // Writes `data` from the gateway at once (the socket has room): true when all went.
  bool gatewayWrites(std::string_view data) {
    const boost::asio::const_buffer part(data.data(), data.size());
    error_code ec;
    const size_t n = gateway_->writeSome({&part, 1}, ec);
    EXPECT_FALSE(ec) << ec.message();
    return n == data.size();
  }

  // One round trip each way after the handshake: the client also takes in whatever the gateway
  // sent after its handshake (TLS 1.3 session tickets) on the way.
  void exchange() {
    EXPECT_TRUE(gatewayWrites("ping"));
    EXPECT_EQ(client_.read(4, in(1000ms)), "ping") << client_.error();
    ASSERT_TRUE(client_.write("pong", in(1000ms))) << client_.error();
    std::array<char, 16> buffer{};
    auto outcome = read(boost::asio::buffer(buffer));
    ASSERT_TRUE(outcome->done);
    EXPECT_FALSE(outcome->ec) << outcome->ec.message();
    EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "pong");
  }

 private:
  boost::asio::io_context io_;
  TcpPair pair_;
  ServerTlsContext context_;
  std::optional<TlsTransport> gateway_;
  Client client_;
};

std::string versionName(const ::testing::TestParamInfo<int>& info) {
  return info.param == TLS1_3_VERSION ? "Tls13" : "Tls12";
}

// Tests of the data path, for both versions the gateway accepts.
class TlsTransportTest : public ::testing::TestWithParam<int> {
 protected:
  ClientOptions options() const { return ClientOptions{GetParam(), {}}; }
};

INSTANTIATE_TEST_SUITE_P(Versions, TlsTransportTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION), versionName);

// ---- Buffers of idle sessions, partial writes, moved retries: how sessions are set up.

TEST_P(TlsTransportTest, SessionsReleaseIdleBuffersAndTakePartialAndMovedWrites) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  h.exchange();
  SSL* ssl = h.gateway().ssl();
  EXPECT_EQ(SSL_version(ssl), GetParam());
  const uint64_t mode = SSL_get_mode(ssl);
  // An idle connection keeps no 17 KiB read and write buffers (the RSS per idle TLS connection).
  EXPECT_NE(mode & SSL_MODE_RELEASE_BUFFERS, 0u);
  EXPECT_NE(SSL_CTX_get_mode(SSL_get_SSL_CTX(ssl)) & SSL_MODE_RELEASE_BUFFERS, 0u);
  // writeSome reports records written before the socket filled; the session retries the rest
  // from its own pending buffer, not from where the first attempt took it.
  EXPECT_NE(mode & SSL_MODE_ENABLE_PARTIAL_WRITE, 0u);
  EXPECT_NE(mode & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, 0u);
  // A read that meets a post-handshake message (a key update) goes on to the next record: a
  // WANT_READ then means the kernel had nothing, which the transport relies on to wait for epoll.
  EXPECT_NE(mode & SSL_MODE_AUTO_RETRY, 0u);
}

// ---- A record partly handed out is still readable: no epoll edge will announce the rest.

// With nothing left, an asynchronous read waits, and completes once the client sends more.
void expectReadWaitsForMore(Harness& h, std::array<char, 256>& buffer) {
  auto waiting = h.startRead(boost::asio::buffer(buffer));
  h.settle(100ms);
  EXPECT_FALSE(waiting->done);
  ASSERT_TRUE(h.client().write("more", in(1000ms)));
  ASSERT_TRUE(h.runUntil([&] { return waiting->done; }, 1000ms));
  EXPECT_FALSE(waiting->ec) << waiting->ec.message();
  EXPECT_EQ(std::string_view(buffer.data(), waiting->n), "more");
}

TEST_P(TlsTransportTest, AReadCompletesFromTheRestOfARecordWithoutNewBytes) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  const std::string record = numbered(1000);
  ASSERT_TRUE(h.client().write(record, in(1000ms)));  // one record
  h.settle();  // the socket's readiness is taken in before the first read
  std::string got;
  std::array<char, 256> buffer{};
  for (int i = 0; i < 4; ++i) {
    auto outcome = h.read(boost::asio::buffer(buffer), 500ms);
    ASSERT_TRUE(outcome->done) << "read " << i << " waited for bytes that OpenSSL already had";
    ASSERT_FALSE(outcome->ec) << outcome->ec.message();
    got.append(buffer.data(), outcome->n);
  }
  EXPECT_EQ(got, record);
  expectReadWaitsForMore(h, buffer);
}

TEST_P(TlsTransportTest, ReadSomeHandsOutTheRestOfARecordThenWouldBlock) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  const std::string record = numbered(1000);
  ASSERT_TRUE(h.client().write(record, in(1000ms)));
  h.settle();
  std::array<char, 256> buffer{};
  auto first = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(first->done);
  ASSERT_EQ(first->n, 256u);
  std::string got(buffer.data(), first->n);
  error_code ec;
  while (got.size() < record.size()) {
    const size_t n = h.gateway().readSome(boost::asio::buffer(buffer), ec);
    ASSERT_FALSE(ec) << "after " << got.size() << " bytes: " << ec.message();
    ASSERT_GT(n, 0u);
    got.append(buffer.data(), n);
  }
  EXPECT_EQ(got, record);
  EXPECT_EQ(h.gateway().readSome(boost::asio::buffer(buffer), ec), 0u);
  EXPECT_EQ(ec, boost::asio::error::would_block);
  expectReadWaitsForMore(h, buffer);
}

// ---- Several parts go out as one record; large parts fill records.

TEST_P(TlsTransportTest, PartsOfAFrameGoOutAsOneRecord) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  h.exchange();  // what the gateway sent after its handshake is off the wire
  const std::string header("\x82\x64", 2);
  const std::string payload = numbered(100);
  const std::string close("\x88\x02\x03\xe8", 4);
  const std::vector<std::string_view> parts{header, payload, close};
  error_code ec;
  const auto buffers = partsAfter(parts, 0);
  EXPECT_EQ(h.gateway().writeSome(buffers, ec), 106u);
  EXPECT_FALSE(ec) << ec.message();

  const std::string raw = h.client().rawRecords(in(1000ms));
  std::string rest;
  const auto records = splitRecords(raw, &rest);
  EXPECT_TRUE(rest.empty());
  ASSERT_EQ(records.size(), 1u) << "three parts went out as " << records.size() << " records";
  EXPECT_EQ(static_cast<uint8_t>(records[0][0]), SSL3_RT_APPLICATION_DATA);
  h.client().give(raw);
  EXPECT_EQ(h.client().plaintextSoFar(), header + payload + close) << h.client().error();
}

TEST_P(TlsTransportTest, PartsOverARecordFillEveryRecordButTheLast) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  h.exchange();
  const std::string header("\x82\x7f\x00\x00\x00\x00\x00\x00\x9c\x40", 10);
  const std::string payload = numbered(40000);
  const std::string close("\x88\x02\x03\xe8", 4);
  const std::vector<std::string_view> parts{header, payload, close};
  const size_t total = header.size() + payload.size() + close.size();
  // As the session writes: once at once, then the rest from its own buffer.
  error_code ec;
  const size_t now = h.gateway().writeSome(partsAfter(parts, 0), ec);
  ASSERT_FALSE(ec) << ec.message();
  std::string rest_of_frame;
  for (const auto& part : partsAfter(parts, now)) {
    rest_of_frame.append(static_cast<const char*>(part.data()), part.size());
  }
  size_t later = 0;
  while (later < rest_of_frame.size()) {
    Outcome outcome;
    h.gateway().asyncWriteSome(
        boost::asio::buffer(rest_of_frame.data() + later, rest_of_frame.size() - later),
        [&outcome](const error_code& e, size_t n) {
          outcome.done = true;
          outcome.ec = e;
          outcome.n = n;
        });
    ASSERT_TRUE(h.runUntil([&] { return outcome.done; }, 1000ms));
    ASSERT_FALSE(outcome.ec) << outcome.ec.message();
    later += outcome.n;
  }

  const std::string raw = h.client().rawRecords(in(1000ms));
  std::string rest;
  const auto records = splitRecords(raw, &rest);
  EXPECT_TRUE(rest.empty());
  std::string plaintext;
  std::vector<size_t> sizes;
  for (const std::string& record : records) {
    EXPECT_EQ(static_cast<uint8_t>(record[0]), SSL3_RT_APPLICATION_DATA);
    h.client().give(record);
    const std::string inside = h.client().plaintextSoFar();
    sizes.push_back(inside.size());
    plaintext += inside;
  }
  EXPECT_EQ(plaintext, header + payload + close) << h.client().error();
  ASSERT_FALSE(sizes.empty());
  // The small header leads a full record instead of going out alone.
  EXPECT_EQ(sizes.front(), 16384u);
  for (size_t size : sizes) EXPECT_LE(size, 16384u);
  EXPECT_EQ(sizes.size(), (total + 16383) / 16384) << "more records than the bytes need";
}

// A short writeSome tells the session the socket is full: it copies the rest aside, counts a
// backpressure pause and waits. OpenSSL's partial-write mode returns after each record, so the
// transport must go on while the socket takes them.
TEST_P(TlsTransportTest, AWriteTheSocketCanTakeGoesOutWhole) {
  Harness h(listenerTls(), options(), SocketBuffers{1 << 20, 0});
  ASSERT_TRUE(h.handshake());
  h.exchange();
  const std::string header("\x82\x7f\x00\x00\x00\x00\x00\x01\x86\xa0", 10);
  const std::string payload = numbered(100000);
  const std::string close("\x88\x02\x03\xe8", 4);
  const std::vector<std::string_view> parts{header, payload, close};
  const std::string expected = header + payload + close;
  error_code ec;
  EXPECT_EQ(h.gateway().writeSome(partsAfter(parts, 0), ec), expected.size());
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(h.client().read(expected.size(), in(2000ms)) == expected) << h.client().error();
}

// ---- Writes that fill the socket, retried from a buffer that moved.

// The session's retry: the unsent rest copied into a new buffer, written from there, and again
// from a new copy after each partial write; the old copies are scribbled over.
struct MovingWrite {
  std::unique_ptr<char[]> rest;
  size_t size = 0;
  size_t moves = 0;
  bool done = false;
  error_code ec;
};

void writeFromMovingBuffers(TlsTransport& transport, const std::shared_ptr<MovingWrite>& write) {
  transport.asyncWriteSome(
      boost::asio::const_buffer(write->rest.get(), write->size),
      [&transport, write](const error_code& ec, size_t n) {
        if (ec || n == 0) {
          write->ec = ec ? ec : boost::asio::error::no_buffer_space;
          write->done = true;
          return;
        }
        auto moved = std::make_unique<char[]>(write->size - n);
        std::memcpy(moved.get(), write->rest.get() + n, write->size - n);
        std::memset(write->rest.get(), 'X', write->size);
        write->rest = std::move(moved);
        write->size -= n;
        ++write->moves;
        if (write->size == 0) {
          write->done = true;
          return;
        }
        writeFromMovingBuffers(transport, write);
      });
}

std::shared_ptr<MovingWrite> movingWrite(const std::vector<boost::asio::const_buffer>& parts) {
  auto write = std::make_shared<MovingWrite>();
  for (const auto& part : parts) write->size += part.size();
  write->rest = std::make_unique<char[]>(write->size);
  size_t at = 0;
  for (const auto& part : parts) {
    std::memcpy(write->rest.get() + at, part.data(), part.size());
    at += part.size();
  }
  return write;
}

// The client reads `size` bytes on its own thread while the gateway's write runs.
std::string clientReadsWhileTheGatewayWrites(Harness& h, const std::shared_ptr<MovingWrite>& write,
                                             size_t size) {
  std::string got;
  std::thread reader([&] { got = h.client().read(size, in(5000ms)); });
  writeFromMovingBuffers(h.gateway(), write);
  h.runUntil([&] { return write->done; }, 5000ms);
  if (!write->done || write->ec) h.gateway().close();  // the reader then stops at once
  reader.join();
  EXPECT_TRUE(write->done) << "the write did not finish";
  EXPECT_FALSE(write->ec) << write->ec.message();
  EXPECT_EQ(got.size(), size) << h.client().error();
  return got;
}

constexpr SocketBuffers kSmallBuffers{4096, 4096};

TEST_P(TlsTransportTest, AWriteLeftPendingCompletesFromAMovedBuffer) {
  Harness h(listenerTls(), options(), kSmallBuffers);
  ASSERT_TRUE(h.handshake());
  const std::string header("\x82\x7f\x00\x00\x00\x00\x00\x04\x00\x00", 10);
  std::string payload = numbered(256 * 1024);
  const std::string close("\x88\x02\x03\xe8", 4);
  const std::string expected = header + payload + close;
  const std::vector<std::string_view> parts{header, payload, close};
  // The client does not read: write until the socket takes no more.
  size_t written = 0;
  error_code ec;
  while (written < expected.size()) {
    const size_t n = h.gateway().writeSome(partsAfter(parts, written), ec);
    written += n;
    if (ec) break;
    ASSERT_GT(n, 0u);
  }
  ASSERT_EQ(ec, boost::asio::error::would_block) << ec.message();
  ASSERT_LT(written, expected.size()) << "the socket never filled";
  auto write = movingWrite(partsAfter(parts, written));
  std::fill(payload.begin(), payload.end(), 'X');  // the caller's first buffer is gone

  const std::string got = clientReadsWhileTheGatewayWrites(h, write, expected.size());
  EXPECT_GT(write->moves, 0u);
  EXPECT_TRUE(got == expected) << "the plaintext arrived altered or out of order";
}

TEST_P(TlsTransportTest, AGatheredRecordLeftPendingCompletesFromAMovedBuffer) {
  Harness h(listenerTls(), options(), kSmallBuffers);
  ASSERT_TRUE(h.handshake());
  std::string header("\x82\x64", 2);
  std::string payload = numbered(100);
  std::string close("\x88\x02\x03\xe8", 4);
  const std::string frame = header + payload + close;
  // Small frames, each gathered into one record, until one finds the socket full: that record
  // waits inside OpenSSL, encrypted from the transport's own gathering buffer.
  size_t frames = 0;
  error_code ec;
  for (; frames < 100000; ++frames) {
    const std::vector<std::string_view> parts{header, payload, close};
    const size_t n = h.gateway().writeSome(partsAfter(parts, 0), ec);
    if (ec) {
      ASSERT_EQ(n, 0u);
      break;
    }
    ASSERT_EQ(n, frame.size());
  }
  ASSERT_EQ(ec, boost::asio::error::would_block) << ec.message();
  auto write = movingWrite({boost::asio::buffer(header), boost::asio::buffer(payload),
                            boost::asio::buffer(close)});
  for (std::string* part : {&header, &payload, &close}) std::fill(part->begin(), part->end(), 'X');

  const size_t size = (frames + 1) * frame.size();
  const std::string got = clientReadsWhileTheGatewayWrites(h, write, size);
  std::string expected;
  for (size_t i = 0; i <= frames; ++i) expected += frame;
  EXPECT_TRUE(got == expected) << "the plaintext arrived altered or out of order";
}

// ---- Session tickets sent after the handshake stall neither direction.

TEST_P(TlsTransportTest, TicketsAfterTheHandshakeStallNeitherDirection) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  // The client reads first, while the gateway writes: a TLS 1.3 ticket comes before the data.
  ASSERT_TRUE(h.gatewayWrites("first"));
  EXPECT_EQ(h.client().read(5, in(1000ms)), "first") << h.client().error();
  EXPECT_EQ(SSL_SESSION_has_ticket(SSL_get0_session(h.client().ssl())), 1);
  ASSERT_TRUE(h.client().write("second", in(1000ms)));
  std::array<char, 64> buffer{};
  auto outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done);
  EXPECT_FALSE(outcome->ec) << outcome->ec.message();
  EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "second");
  ASSERT_TRUE(h.gatewayWrites("third"));
  EXPECT_EQ(h.client().read(5, in(1000ms)), "third") << h.client().error();
}

// ---- peerEnded after a read.

TEST_P(TlsTransportTest, PeerEndedAfterCloseNotifyAndFin) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  ASSERT_TRUE(h.client().write("last words", in(1000ms)));
  ERR_clear_error();
  SSL_shutdown(h.client().ssl());  // close_notify
  ASSERT_TRUE(h.client().flush(in(1000ms)));
  ASSERT_EQ(::shutdown(h.client().fd(), SHUT_WR), 0);
  h.settle();
  std::array<char, 64> buffer{};
  auto outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done);
  ASSERT_FALSE(outcome->ec) << outcome->ec.message();
  EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "last words");
  std::array<char, 256> scratch{};
  EXPECT_TRUE(h.gateway().peerEnded(boost::asio::buffer(scratch)));
}

TEST_P(TlsTransportTest, PeerNotEndedWhileItIsConnectedAndQuiet) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  ASSERT_TRUE(h.client().write("hello", in(1000ms)));
  h.settle();
  std::array<char, 64> buffer{};
  auto outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done);
  ASSERT_FALSE(outcome->ec) << outcome->ec.message();
  std::array<char, 256> scratch{};
  EXPECT_FALSE(h.gateway().peerEnded(boost::asio::buffer(scratch)));
  EXPECT_FALSE(h.gateway().peerEnded(boost::asio::buffer(scratch)));  // now known drained
  // Still usable both ways.
  ASSERT_TRUE(h.client().write("still here", in(1000ms)));
  outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done);
  EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "still here");
}

// ---- close().

TEST_P(TlsTransportTest, CloseAfterTheHandshakeSendsCloseNotify) {
  Harness h(listenerTls(), options());
  ASSERT_TRUE(h.handshake());
  h.exchange();
  h.gateway().close();
  std::string plaintext;
  EXPECT_EQ(h.client().readToEnd(in(1000ms), plaintext), SSL_ERROR_ZERO_RETURN)
      << h.client().error();
  EXPECT_EQ(plaintext, "");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// ---- A key update asked for by the client (TLS 1.3 only).
//
// OpenSSL 3.0 answers a requested key update with its next write, not inside the read that met
// it. The one write inside a read found (a TLS 1.2 renegotiation refused with a no_renegotiation
// alert) does not surface either: OpenSSL ignores whether the alert went (it stays queued for the
// next write) and the read goes on, ending in WANT_READ. So no read here needs the socket
// writable, and the transport's WANT_WRITE-inside-a-read path has no test of its own.

TEST(TlsTransportKeyUpdateTest, AKeyUpdateRequestedByTheClientStallsNeitherDirection) {
  Harness h;
  ASSERT_TRUE(h.handshake());
  h.exchange();
  ASSERT_EQ(SSL_version(h.gateway().ssl()), TLS1_3_VERSION);
  ASSERT_EQ(SSL_key_update(h.client().ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
  ASSERT_TRUE(h.client().write("after the update", in(1000ms)));  // KeyUpdate, then the data
  h.settle();  // both records wait in the kernel; their edge is taken
  std::array<char, 64> buffer{};
  auto outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done) << "the read stopped at the key update";
  ASSERT_FALSE(outcome->ec) << outcome->ec.message();
  EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "after the update");
  // The gateway's own KeyUpdate goes out with its next write, ahead of the data.
  ASSERT_TRUE(h.gatewayWrites("reply"));
  EXPECT_EQ(h.client().read(5, in(1000ms)), "reply") << h.client().error();
  EXPECT_EQ(h.client().keyUpdatesReceived(), 1);
  ASSERT_TRUE(h.client().write("again", in(1000ms)));
  outcome = h.read(boost::asio::buffer(buffer));
  ASSERT_TRUE(outcome->done);
  ASSERT_FALSE(outcome->ec) << outcome->ec.message();
  EXPECT_EQ(std::string_view(buffer.data(), outcome->n), "again");
  ASSERT_TRUE(h.gatewayWrites("and again"));
  EXPECT_EQ(h.client().read(9, in(1000ms)), "and again") << h.client().error();
}

// ---- Failed handshakes: why, and what closing them sends.

TEST(TlsTransportHandshakeTest, PlainHttpIsNotTlsAndClosingSendsNothing) {
  Harness h;
  Outcome server;
  h.gateway().asyncHandshake([&server](const error_code& ec) {
    server.done = true;
    server.ec = ec;
  });
  const std::string request = "GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n";
  ASSERT_TRUE(Client::sendAll(h.client().fd(), request.data(), request.size(), in(1000ms)));
  ASSERT_TRUE(h.runUntil([&] { return server.done; }));
  ASSERT_TRUE(server.ec);
  EXPECT_EQ(tlsFailureReason(server.ec, true), "not_tls") << server.ec.message();
  h.gateway().close();
  // No close_notify (nor anything else) on a session that never finished its handshake.
  EXPECT_EQ(h.client().rawRecords(in(1000ms)), "");
  char byte = 0;
  EXPECT_EQ(::recv(h.client().fd(), &byte, 1, MSG_DONTWAIT), 0) << "no FIN";
  EXPECT_EQ(ERR_peek_error(), 0u) << "an OpenSSL error was left on the thread's queue";
}

TEST(TlsTransportHandshakeTest, ATls12ClientAgainstTls13OnlyIsProtocolVersion) {
  config::ListenerTls settings = listenerTls();
  settings.min_version = config::ListenerTls::Version::kTls13;
  Harness h(settings, ClientOptions{TLS1_2_VERSION, {}});
  error_code ec;
  EXPECT_FALSE(h.handshake(&ec));
  EXPECT_EQ(tlsFailureReason(ec, true), "protocol_version") << ec.message();
}

class TlsTransportClientCertTest : public TlsTransportTest {};
INSTANTIATE_TEST_SUITE_P(Versions, TlsTransportClientCertTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION), versionName);

TEST_P(TlsTransportClientCertTest, ARequiredClientCertificateMissingIsNoClientCert) {
  config::ListenerTls settings = listenerTls();
  settings.client_ca_file = "ca.pem";
  settings.client_ca_pem = gatewayCredentials().cert_pem;
  settings.require_client_cert = true;
  Harness h(settings, options());
  error_code ec;
  EXPECT_FALSE(h.handshake(&ec));
  EXPECT_EQ(tlsFailureReason(ec, true), "no_client_cert") << ec.message();
}

// ---- The certificate for a server name.

struct NamedCertificates {
  Credentials fallback = selfSigned("default.test");
  Credentials exact = selfSigned("a.example.org");
  Credentials wildcard = selfSigned("wildcard.example.org");
  Credentials other = selfSigned("mixed.case.test");

  config::ListenerTls settings() const {
    config::ListenerTls out;
    out.certificates.push_back(certificate(fallback, {"default.test"}));
    out.certificates.push_back(certificate(exact, {"a.example.org"}));
    out.certificates.push_back(certificate(wildcard, {"*.example.org"}));
    out.certificates.push_back(certificate(other, {"Mixed.Case.Test"}));
    return out;
  }
};

TEST(ServerTlsContextTest, CertificateForPrefersExactThenOneLabelWildcardAnyCase) {
  const NamedCertificates names;
  const ServerTlsContext context(names.settings());
  EXPECT_EQ(context.certificateFor("a.example.org"), 1u) << "exact beats the wildcard";
  EXPECT_EQ(context.certificateFor("A.Example.ORG"), 1u);
  EXPECT_EQ(context.certificateFor("b.example.org"), 2u);
  EXPECT_EQ(context.certificateFor("B.EXAMPLE.org"), 2u);
  EXPECT_EQ(context.certificateFor("a.b.example.org"), 0u) << "a wildcard covers one label";
  EXPECT_EQ(context.certificateFor("example.org"), 0u);
  EXPECT_EQ(context.certificateFor(".example.org"), 0u);
  EXPECT_EQ(context.certificateFor("mixed.case.test"), 3u);
  EXPECT_EQ(context.certificateFor("MIXED.CASE.TEST"), 3u);
  EXPECT_EQ(context.certificateFor("default.test"), 0u);
  EXPECT_EQ(context.certificateFor("unknown.net"), 0u);
  EXPECT_EQ(context.certificateFor(""), 0u);
}

TEST(ServerTlsContextTest, TheClientGetsTheCertificateItsServerNameSelects) {
  const NamedCertificates names;
  const auto servedFor = [&](const std::string& server_name) {
    Harness h(names.settings(), ClientOptions{0, server_name});
    EXPECT_TRUE(h.handshake()) << server_name;
    // The context switched to keeps the same settings.
    EXPECT_NE(SSL_CTX_get_mode(SSL_get_SSL_CTX(h.gateway().ssl())) & SSL_MODE_RELEASE_BUFFERS,
              0u);
    X509* cert = SSL_get0_peer_certificate(h.client().ssl());
    return commonName(cert);
  };
  EXPECT_EQ(servedFor("a.example.org"), "a.example.org");
  EXPECT_EQ(servedFor("b.example.org"), "wildcard.example.org");
  EXPECT_EQ(servedFor("a.b.example.org"), "default.test");
  EXPECT_EQ(servedFor(""), "default.test");
}

}  // namespace
}  // namespace wsgate::gateway
