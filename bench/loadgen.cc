// wsgate-loadgen: the WebSocket load generator of the benchmark. One thread, Beast clients
// (binary messages, permessage-deflate off, each message written with one system call).
//
//   echo        N connections keep K messages of S bytes in flight each, for D seconds or until
//               M messages came back: messages/s and round-trip latency percentiles
//   rate        N connections send R messages/s in total on a fixed schedule; latency counts from
//               each message's scheduled send time, so a stalled proxy cannot hide its queueing
//   handshakes  C concurrent loops of connect + upgrade + close handshake for D seconds; with
//               --handshake-rate H they start H handshakes/s in total on a fixed schedule
//               instead of as fast as they can
//   hold        open N idle connections, print "held N failed F" once all attempts ended, keep
//               them until SIGTERM/SIGINT or --hold seconds, then close them
//
// echo, rate and handshakes run a warm-up, then a measurement window; only what lands inside
// the window counts. With --watch-pid (the proxy) and --backend-pid, the CPU time (utime+stime
// from /proc/PID/stat) of those processes and of the load generator is sampled at the window's
// edges. Prints one human line on stderr and one JSON line on stdout. Every phase is bounded in
// time: a proxy that stops answering ends the run with errors, never a hang.
//
// --tls: every mode over TLS (wss), OpenSSL through Asio's ssl::stream. --server-name sets SNI;
// --ca FILE verifies the proxy's certificate chain against FILE and its name against
// --server-name; without --ca nothing is verified. Every connection makes a full handshake: the
// client context has no session cache and no tickets (SSL_OP_NO_TICKET), no connection is ever
// offered a session, and a connection the server reports as resumed is counted ("tls_resumed"),
// which the benchmark treats as a failure.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

namespace wsgate::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
namespace ssl = asio::ssl;
using PlainWs = websocket::stream<tcp::socket>;
using TlsWs = websocket::stream<ssl::stream<tcp::socket>>;
template <class Ws>
constexpr bool kIsTls = std::is_same_v<Ws, TlsWs>;
using ErrorCode = boost::system::error_code;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxLatencySamples = 20'000'000;
constexpr auto kDrainTimeout = std::chrono::seconds(2);
constexpr auto kCloseTimeout = std::chrono::seconds(1);

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

double secondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/";
  int connections = 50;
  int inflight = 8;
  size_t size = 64;
  double duration = 5;
  uint64_t maxMessages = 0;
  double rate = 5000;
  int concurrency = 16;
  double handshakeRate = 0;  // 0: each loop starts its next handshake at once
  // handshakes: send the close frame and close the connection at once, without waiting for the
  // reply (mobile apps going to background, crashed tabs, many load generators).
  bool abruptClose = false;
  bool text = false;  // echo/rate: text messages (ASCII) instead of binary
  double hold = 60;
  double warmup = 0.5;
  double connectTimeout = 10;
  std::vector<int> watchPids;
  int backendPid = 0;
  bool tls = false;
  std::string serverName;  // SNI, and the name verified with --ca
  std::string caFile;      // empty: no verification
};

// CPU time of a process in microseconds (utime + stime, all threads), or -1 if it is gone.
double processCpuMicros(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  // The command name (field 2) may hold spaces: fields are counted after its closing ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  static const double kTicksPerSecond = static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<double>(utime + stime) * 1e6 / kTicksPerSecond;
}

// TCP segments sent so far by every process of this network namespace (OutSegs of the Tcp line
// of /proc/net/snmp); -1 if unreadable.
double tcpSegmentsSent() {
  std::ifstream snmp("/proc/net/snmp");
  std::string line;
  std::vector<std::string> names;
  while (std::getline(snmp, line)) {
    if (!line.starts_with("Tcp: ")) continue;
    std::istringstream fields(line.substr(5));
    std::vector<std::string> values{std::istream_iterator<std::string>(fields), {}};
    if (names.empty()) {
      names = std::move(values);
      continue;
    }
    for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
      if (names[i] == "OutSegs") return std::stod(values[i]);
    }
  }
  return -1;
}

struct CpuSample {
  double proxy = 0;
  double backend = 0;
  double self = 0;
  double segments = 0;  // tcpSegmentsSent()
};

CpuSample sampleCpu(const Options& o) {
  CpuSample s;
  for (int pid : o.watchPids) s.proxy += processCpuMicros(std::to_string(pid));
  if (o.backendPid > 0) s.backend = processCpuMicros(std::to_string(o.backendPid));
  s.self = processCpuMicros("self");
  s.segments = tcpSegmentsSent();
  return s;
}

uint32_t percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(rank, sorted.size() - 1)];
}

// What every connection reports into; counts only while the window is open.
struct Stats {
  bool recording = false;
  uint64_t messages = 0;       // echoes received inside the window
  uint64_t messagesTotal = 0;  // echoes received during the whole run
  uint64_t handshakes = 0;
  uint64_t connectFailures = 0;
  uint64_t errors = 0;  // connections lost or operations failed after the upgrade
  std::string firstError;
  std::vector<uint32_t> latencyUs;
  // The longest time inside the window with no echo arriving on any connection: a stall of the
  // whole machine (or a lost segment waiting for its retransmission) shows up here.
  Clock::time_point lastEcho;
  Clock::duration longestGap{};
  // --tls: what the first handshake negotiated, and how many handshakes were not full ones.
  std::string tlsVersion;
  std::string tlsCipher;
  std::string tlsGroup;
  uint64_t tlsResumed = 0;

  void recordTls(SSL* ssl) {
    if (SSL_session_reused(ssl)) ++tlsResumed;
    if (!tlsVersion.empty()) return;
    tlsVersion = SSL_get_version(ssl);
    tlsCipher = SSL_get_cipher_name(ssl);
    const int group = SSL_get_negotiated_group(ssl);
    if (group != 0) {
      const char* name = OBJ_nid2sn(group & ~TLSEXT_nid_unknown);
      tlsGroup = name != nullptr ? name : std::to_string(group);
    }
  }

  void recordEcho(Clock::time_point now, Clock::duration latency) {
    if (!recording) return;
    ++messages;
    longestGap = std::max(longestGap, now - lastEcho);
    lastEcho = now;
    recordLatency(latency);
  }

  void recordLatency(Clock::duration d) {
    if (!recording || latencyUs.size() >= kMaxLatencySamples) return;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    latencyUs.push_back(static_cast<uint32_t>(std::max<int64_t>(us, 0)));
  }
  void recordError(const ErrorCode& ec, bool connecting) {
    ++(connecting ? connectFailures : errors);
    if (firstError.empty()) firstError = ec.message();
  }
  void reset() {
    messages = 0;
    handshakes = 0;
    latencyUs.clear();
    lastEcho = Clock::now();
    longestGap = {};
  }
};

// The client side of --tls: one context for every connection.
struct TlsClient {
  explicit TlsClient(const Options& o) : context(ssl::context::tls_client), options(o) {
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    SSL_CTX* native = context.native_handle();
    // Full handshakes only: no client-side session cache to resume from, no ticket asked for
    // (TLS 1.2; a TLS 1.3 server may still send tickets after the handshake, which are dropped).
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
    // 5,000 held connections: give OpenSSL's buffers back while a connection is idle.
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    if (o.caFile.empty()) {
      context.set_verify_mode(ssl::verify_none);
    } else {
      context.load_verify_file(o.caFile);
      context.set_verify_mode(ssl::verify_peer);
    }
  }
  ssl::context context;
  const Options& options;
};

template <class Ws>
Ws makeStream(asio::io_context& io, TlsClient* tls) {
  if constexpr (kIsTls<Ws>) {
    return Ws(io, tls->context);
  } else {
    return Ws(io);
  }
}

template <class Ws>
void configureClient(Ws& ws, size_t messageSize, bool text) {
  ErrorCode ignored;  // a connection already reset fails its handshake instead
  beast::get_lowest_layer(ws).set_option(tcp::no_delay(true), ignored);
  ws.set_option(websocket::permessage_deflate{});
  ws.auto_fragment(false);
  ws.read_message_max(256 * 1024 * 1024);
  // Beast masks client frames through this buffer: size it so a message goes out in one write,
  // as a browser would send it, instead of 4 KiB pieces that cost every proxy extra reads.
  ws.write_buffer_bytes(std::clamp<size_t>(messageSize + 16, 4096, 1 << 20));
  ws.binary(!text);
}

// Connect, TLS handshake (--tls), WebSocket upgrade.
template <class Ws>
asio::awaitable<ErrorCode> connectAndUpgrade(Ws& ws, const tcp::endpoint& endpoint,
                                             const Options& o, size_t messageSize, Stats& stats) {
  auto [ec] = co_await beast::get_lowest_layer(ws).async_connect(endpoint, kAwait);
  if (ec) co_return ec;
  configureClient(ws, messageSize, o.text);
  if constexpr (kIsTls<Ws>) {
    auto& tls = ws.next_layer();
    if (!o.serverName.empty()) {
      SSL_set_tlsext_host_name(tls.native_handle(), o.serverName.c_str());
      if (!o.caFile.empty()) tls.set_verify_callback(ssl::host_name_verification(o.serverName));
    }
    std::tie(ec) = co_await tls.async_handshake(ssl::stream_base::client, kAwait);
    if (ec) co_return ec;
    stats.recordTls(tls.native_handle());
  }
  const std::string host = o.host + ":" + std::to_string(o.port);
  std::tie(ec) = co_await ws.async_handshake(host, o.path, kAwait);
  co_return ec;
}

// Whether a close handshake completed: the peer's close frame arrived. Over TLS Beast then tears
// the connection down with close_notify both ways and a TCP shutdown, and a proxy that has closed
// its end already (without close_notify, or with a reset) fails that teardown with
// stream_truncated, ENOTCONN, ECONNRESET or EPIPE: the WebSocket was closed properly all the
// same, as a browser would see it.
template <class Ws>
bool closedCleanly(const Ws& ws, const ErrorCode& ec) {
  if (!ec) return true;
  return kIsTls<Ws> && ws.reason().code != websocket::close_code::none;
}

// One connection of the echo and rate modes. In echo mode it keeps `inflight` messages
// outstanding; in rate mode a timer queues messages at their scheduled times. Echoes come back in
// order, so the oldest send time matches each echo.
template <class Ws>
class EchoConnection : public std::enable_shared_from_this<EchoConnection<Ws>> {
 public:
  using OnOpen = std::function<void(bool)>;
  using OnDrained = std::function<void()>;

  EchoConnection(asio::io_context& io, TlsClient* tls, const Options& o, Stats& stats,
                 const std::vector<uint8_t>& payload)
      : ws_(makeStream<Ws>(io, tls)), timer_(io), options_(o), stats_(stats), payload_(payload) {}

  void open(const tcp::endpoint& endpoint, OnOpen onOpen) {
    onOpen_ = std::move(onOpen);
    timer_.expires_after(seconds(options_.connectTimeout));
    timer_.async_wait([weak = this->weak_from_this()](ErrorCode ec) {
      if (auto self = weak.lock(); self && !ec) self->abort();
    });
    asio::co_spawn(ws_.get_executor(),
                   connectAndUpgrade(ws_, endpoint, options_, options_.size, stats_),
                   [self = this->shared_from_this()](std::exception_ptr e, ErrorCode ec) {
                     if (e && !ec) ec = asio::error::fault;
                     self->opened(ec);
                   });
  }

  void startTraffic(Clock::duration interval, Clock::duration phase) {
    if (!open_) return;
    if (interval == Clock::duration::zero()) {
      credits_ = options_.inflight;
      writeNext();
      return;
    }
    interval_ = interval;
    next_ = Clock::now() + phase;
    tick();
  }

  // Sends no more; calls onDrained once every message written got its echo.
  void stopSending(OnDrained onDrained) {
    sending_ = false;
    credits_ = 0;
    queued_.clear();
    timer_.cancel();
    onDrained_ = std::move(onDrained);
    checkDrained();
  }

  void close() {
    if (!open_ || closing_) return;
    closing_ = true;
    if (writing_) return;  // Beast allows no close while a write is outstanding; abort instead.
    ws_.async_close(websocket::close_code::normal, [self = this->shared_from_this()](ErrorCode) {});
  }

  bool isOpen() const { return open_; }

  void abort() {
    timer_.cancel();
    ErrorCode ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }

 private:
  void opened(ErrorCode ec) {
    timer_.cancel();
    open_ = !ec;
    if (ec) stats_.recordError(ec, true);
    auto onOpen = std::move(onOpen_);
    onOpen(open_);
    if (open_) read();
  }

  void tick() {
    timer_.expires_at(next_);
    timer_.async_wait([self = this->shared_from_this()](ErrorCode ec) {
      if (ec || !self->sending_) return;
      // Queue every message that is due; if the client fell behind they go out back to back,
      // still timed from their scheduled moment.
      for (const auto now = Clock::now(); self->next_ <= now; self->next_ += self->interval_) {
        self->queued_.push_back(self->next_);
      }
      self->writeNext();
      self->tick();
    });
  }

  void writeNext() {
    if (writing_ || !open_ || !sending_) return;
    Clock::time_point sentAt;
    if (credits_ > 0) {
      --credits_;
      sentAt = Clock::now();
    } else if (!queued_.empty()) {
      sentAt = queued_.front();
      queued_.pop_front();
    } else {
      return;
    }
    inflight_.push_back(sentAt);
    writing_ = true;
    ws_.async_write(asio::buffer(payload_),
                    [self = this->shared_from_this()](ErrorCode ec, size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->lost(ec);
                        return;
                      }
                      if (self->closing_) {
                        self->ws_.async_close(websocket::close_code::normal, [self](ErrorCode) {});
                        return;
                      }
                      self->writeNext();
                    });
  }

  void read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](ErrorCode ec, size_t) {
      if (ec) {
        if (!self->closing_) self->lost(ec);
        self->open_ = false;
        self->inflight_.clear();
        self->checkDrained();
        return;
      }
      self->buffer_.clear();
      self->echoed();
      self->read();
    });
  }

  void echoed() {
    const auto now = Clock::now();
    ++stats_.messagesTotal;
    if (!inflight_.empty()) {
      stats_.recordEcho(now, now - inflight_.front());
      inflight_.pop_front();
    }
    if (sending_ && interval_ == Clock::duration::zero()) {
      ++credits_;
      writeNext();
    }
    checkDrained();
  }

  void lost(const ErrorCode& ec) {
    if (lostReported_) return;
    lostReported_ = true;
    stats_.recordError(ec, false);
  }

  void checkDrained() {
    if (sending_ || !onDrained_ || !inflight_.empty()) return;
    auto onDrained = std::move(onDrained_);
    onDrained_ = nullptr;
    onDrained();
  }

  Ws ws_;
  asio::steady_timer timer_;
  const Options& options_;
  Stats& stats_;
  const std::vector<uint8_t>& payload_;
  beast::flat_buffer buffer_;
  OnOpen onOpen_;
  OnDrained onDrained_;
  std::deque<Clock::time_point> queued_;    // rate mode: due, not yet written
  std::deque<Clock::time_point> inflight_;  // written, echo not yet received
  Clock::duration interval_{};
  Clock::time_point next_;
  int credits_ = 0;
  bool open_ = false;
  bool sending_ = true;
  bool writing_ = false;
  bool closing_ = false;
  bool lostReported_ = false;
};

// The measurement frame shared by the modes: warm-up, window, results.
template <class Ws>
class Runner {
 public:
  explicit Runner(const Options& o)
      : options_(o),
        tls_(kIsTls<Ws> ? std::make_unique<TlsClient>(o) : nullptr),
        io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
        endpoint_(asio::ip::make_address(o.host), o.port),
        timer_(io_),
        hardStop_(io_),
        signals_(io_, SIGINT, SIGTERM) {}

  int run() {
    signals_.async_wait([this](ErrorCode ec, int) {
      if (!ec) interrupted();
    });
    if (options_.mode == "echo" || options_.mode == "rate") {
      startEcho();
    } else if (options_.mode == "handshakes") {
      startHandshakes();
    } else if (options_.mode == "hold") {
      startHold();
    } else {
      std::cerr << "wsgate-loadgen: unknown mode '" << options_.mode << "'\n";
      return 2;
    }
    try {
      io_.run();
    } catch (const std::exception& e) {  // a bug here must still leave a result line
      stats_.firstError = std::string("load generator: ") + e.what();
      hardStopped_ = true;
      closeWindow();
    }
    return report();
  }

 private:
  // --- echo and rate -----------------------------------------------------------------------------
  void startEcho() {
    payload_.assign(options_.size, 'x');
    armHardStop(options_.connectTimeout + options_.warmup + options_.duration + 10);
    for (int i = 0; i < options_.connections; ++i) {
      auto c = std::make_shared<EchoConnection<Ws>>(io_, tls_.get(), options_, stats_, payload_);
      connections_.push_back(c);
      c->open(endpoint_, [this](bool ok) {
        opened_ += ok;
        if (++attempted_ == options_.connections) allEchoConnectionsOpened();
      });
    }
  }

  void allEchoConnectionsOpened() {
    if (opened_ == 0) return finish();
    Clock::duration interval{};
    if (options_.mode == "rate") interval = seconds(options_.connections / options_.rate);
    for (size_t i = 0; i < connections_.size(); ++i) {
      // Spread the connections' schedules evenly over one interval.
      const auto phase =
          interval * static_cast<int64_t>(i) / static_cast<int64_t>(connections_.size());
      connections_[i]->startTraffic(interval, phase);
    }
    afterWarmup([this] {
      timer_.expires_after(seconds(options_.duration));
      timer_.async_wait([this](ErrorCode ec) {
        if (!ec) stopEcho();
      });
      if (options_.maxMessages > 0) pollMessageCap();
    });
  }

  void pollMessageCap() {
    // A cheap poll instead of a check per message: the cap is a bound, not an exact count.
    capTimer_ = std::make_unique<asio::steady_timer>(io_, std::chrono::milliseconds(5));
    capTimer_->async_wait([this](ErrorCode ec) {
      if (ec || windowClosed_) return;
      if (stats_.messages >= options_.maxMessages) {
        timer_.cancel();
        return stopEcho();
      }
      pollMessageCap();
    });
  }

  void stopEcho() {
    if (windowClosed_) return;
    closeWindow();
    if (capTimer_) capTimer_->cancel();
    // Armed first: when every connection is drained already, closeEcho re-arms it at once.
    timer_.expires_after(kDrainTimeout);
    timer_.async_wait([this](ErrorCode ec) {
      if (!ec) closeEcho();
    });
    auto pending = std::make_shared<size_t>(connections_.size());
    for (auto& c : connections_) {
      c->stopSending([this, pending] {
        if (--*pending == 0) closeEcho();
      });
    }
  }

  void closeEcho() {
    if (closing_) return;
    closing_ = true;
    for (auto& c : connections_) c->close();
    closeDeadline_ = Clock::now() + kCloseTimeout;
    waitClosed();
  }

  void waitClosed() {
    timer_.expires_after(std::chrono::milliseconds(20));
    timer_.async_wait([this](ErrorCode ec) {
      if (ec) return;
      const bool anyOpen = std::any_of(connections_.begin(), connections_.end(),
                                       [](const auto& c) { return c->isOpen(); });
      if (anyOpen && Clock::now() < closeDeadline_) return waitClosed();
      for (auto& c : connections_) c->abort();
      finish();
    });
  }

  // --- handshakes --------------------------------------------------------------------------------
  void startHandshakes() {
    armHardStop(options_.warmup + options_.duration + 10);
    activeLoops_ = options_.concurrency;
    for (int i = 0; i < options_.concurrency; ++i) {
      asio::co_spawn(io_, handshakeLoop(i), [this](std::exception_ptr) {
        if (--activeLoops_ == 0 && stopping_) finish();
      });
    }
    afterWarmup([this] {
      timer_.expires_after(seconds(options_.duration));
      timer_.async_wait([this](ErrorCode ec) {
        if (ec) return;
        closeWindow();
        stopping_ = true;
        timer_.expires_after(kDrainTimeout);  // open loops end by themselves, bounded
        timer_.async_wait([this](ErrorCode) { finish(); });
      });
    });
  }

  asio::awaitable<void> handshakeLoop(int index) {
    // Paced: the loops take turns on one schedule of `handshakeRate` starts per second. A loop
    // that falls behind starts at once but never bunches up its missed starts.
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options_.handshakeRate > 0
                                          ? options_.concurrency / options_.handshakeRate
                                          : 0.0));
    auto due = Clock::now() + interval * index / options_.concurrency;
    asio::steady_timer pace(io_);
    while (!stopping_) {
      if (options_.handshakeRate > 0) {
        const auto now = Clock::now();
        if (due > now) {
          pace.expires_at(due);
          co_await pace.async_wait(kAwait);
          if (stopping_) break;
        }
        due = std::max(due + interval, now);
      }
      // A new stream, so a new SSL object each time, never offered a session: a full handshake.
      auto ws = makeStream<Ws>(io_, tls_.get());
      asio::steady_timer guard(io_);
      guard.expires_after(seconds(options_.connectTimeout));
      guard.async_wait([&ws](ErrorCode ec) {
        ErrorCode ignored;
        if (!ec) beast::get_lowest_layer(ws).close(ignored);
      });
      const auto start = Clock::now();
      auto ec = co_await connectAndUpgrade(ws, endpoint_, options_, 0, stats_);
      if (ec) {
        if (stats_.recording) stats_.recordError(ec, true);
        // A refused or failing proxy must not turn this loop into a busy spin.
        asio::steady_timer pause(io_, std::chrono::milliseconds(10));
        co_await pause.async_wait(kAwait);
        continue;
      }
      const auto upgraded = Clock::now();
      if (options_.abruptClose) {
        // A masked close 1000 with no reason; the mask is zero, so the code is sent as is.
        // Over TLS it goes out in a record, and the TCP connection closes with no close_notify.
        static constexpr uint8_t kClose[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
        size_t written = 0;
        std::tie(ec, written) =
            co_await asio::async_write(ws.next_layer(), asio::buffer(kClose), kAwait);
        ErrorCode ignored;
        beast::get_lowest_layer(ws).close(ignored);
      } else {
        std::tie(ec) = co_await ws.async_close(websocket::close_code::normal, kAwait);
        if (closedCleanly(ws, ec)) ec = {};
      }
      guard.cancel();
      if (!stats_.recording) continue;
      if (ec) {
        stats_.recordError(ec, false);
        continue;
      }
      ++stats_.handshakes;
      stats_.recordLatency(upgraded - start);
    }
  }

  // --- hold --------------------------------------------------------------------------------------
  struct Held {
    Held(asio::io_context& io, TlsClient* tls) : ws(makeStream<Ws>(io, tls)) {}
    Ws ws;
    beast::flat_buffer buffer;
  };

  void startHold() {
    armHardStop(options_.connectTimeout * 10 + options_.hold + 10);
    const int loops = std::max(1, std::min(options_.concurrency, options_.connections));
    for (int i = 0; i < loops; ++i) {
      const int count = options_.connections / loops + (i < options_.connections % loops);
      asio::co_spawn(io_, holdLoop(count), asio::detached);
    }
  }

  asio::awaitable<void> holdLoop(int count) {
    for (int i = 0; i < count && !stopping_; ++i) {
      auto held = std::make_unique<Held>(io_, tls_.get());
      asio::steady_timer guard(io_);
      guard.expires_after(seconds(options_.connectTimeout));
      guard.async_wait([ws = &held->ws](ErrorCode ec) {
        ErrorCode ignored;
        if (!ec) beast::get_lowest_layer(*ws).close(ignored);
      });
      auto ec = co_await connectAndUpgrade(held->ws, endpoint_, options_, 0, stats_);
      guard.cancel();
      if (ec) {
        stats_.recordError(ec, true);
      } else {
        ++stats_.handshakes;
        // One pending read per connection answers pings and notices a proxy that drops it.
        Held& h = *held;
        h.ws.async_read(h.buffer, [this](ErrorCode rec, size_t) {
          if (!stopping_) stats_.recordError(rec, false);
        });
        held_.push_back(std::move(held));
      }
      if (++attempted_ == options_.connections) allHeld();
    }
  }

  void allHeld() {
    std::cout << "held " << stats_.handshakes << " failed " << stats_.connectFailures << std::endl;
    timer_.expires_after(seconds(options_.hold));
    timer_.async_wait([this](ErrorCode ec) {
      if (!ec) endHold();
    });
  }

  void endHold() {
    if (stopping_) return;
    stopping_ = true;
    heldAtEnd_ = held_.size() - stats_.errors;
    ErrorCode ignored;
    for (auto& h : held_) beast::get_lowest_layer(h->ws).close(ignored);
    finish();
  }

  // --- shared frame ------------------------------------------------------------------------------
  void afterWarmup(std::function<void()> then) {
    timer_.expires_after(seconds(options_.warmup));
    timer_.async_wait([this, then = std::move(then)](ErrorCode ec) {
      if (ec) return;
      stats_.reset();
      stats_.recording = true;
      cpuStart_ = sampleCpu(options_);
      windowStart_ = Clock::now();
      windowOpened_ = true;
      then();
    });
  }

  void closeWindow() {
    if (windowClosed_) return;
    windowClosed_ = true;
    windowEnd_ = Clock::now();
    cpuEnd_ = sampleCpu(options_);
    stats_.recording = false;
  }

  void interrupted() {
    if (options_.mode == "hold") return endHold();
    if (options_.mode == "handshakes") {
      closeWindow();
      stopping_ = true;
      return finish();
    }
    if (!windowOpened_) return finish();
    timer_.cancel();
    stopEcho();
  }

  void armHardStop(double limitSeconds) {
    hardStop_.expires_after(seconds(limitSeconds));
    hardStop_.async_wait([this](ErrorCode ec) {
      if (ec) return;
      hardStopped_ = true;
      finish();
    });
  }

  void finish() {
    closeWindow();
    io_.stop();
  }

  int report() {
    const auto& o = options_;
    const bool measured = windowOpened_;
    const double window = measured ? secondsBetween(windowStart_, windowEnd_) : 0;
    std::sort(stats_.latencyUs.begin(), stats_.latencyUs.end());
    nlohmann::json out = {{"mode", o.mode},
                          {"target", o.host + ":" + std::to_string(o.port) + o.path},
                          {"connections", o.connections},
                          {"seconds", window},
                          {"connect_failures", stats_.connectFailures},
                          {"errors", stats_.errors},
                          {"timed_out", hardStopped_},
                          {"tls", o.tls}};
    if (!stats_.firstError.empty()) out["first_error"] = stats_.firstError;
    std::ostringstream human;
    human.precision(3);
    if (o.tls) {
      out["tls_verified"] = !o.caFile.empty();
      if (!o.serverName.empty()) out["tls_server_name"] = o.serverName;
      if (!stats_.tlsVersion.empty()) out["tls_version"] = stats_.tlsVersion;
      if (!stats_.tlsCipher.empty()) out["tls_cipher"] = stats_.tlsCipher;
      if (!stats_.tlsGroup.empty()) out["tls_group"] = stats_.tlsGroup;
      out["tls_resumed"] = stats_.tlsResumed;
      human << (stats_.tlsVersion.empty() ? "TLS" : stats_.tlsVersion) << " ";
    }
    if (o.mode == "echo" || o.mode == "rate") {
      out["open"] = opened_;
      out["size"] = o.size;
      if (o.mode == "echo") out["inflight"] = o.inflight;
      if (o.mode == "rate") out["rate"] = o.rate;
      out["messages"] = stats_.messages;
      out["messages_total"] = stats_.messagesTotal;
      out["msgs_per_s"] = window > 0 ? stats_.messages / window : 0;
      const auto tail = windowEnd_ - stats_.lastEcho;  // silence up to the end counts too
      out["longest_gap_us"] = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::max(stats_.longestGap, measured ? tail : Clock::duration{}))
                                  .count();
      human << o.mode << " " << o.size << " B, " << opened_
            << " conns: " << static_cast<uint64_t>(window > 0 ? stats_.messages / window : 0)
            << " msgs/s";
    } else if (o.mode == "handshakes") {
      out["concurrency"] = o.concurrency;
      if (o.handshakeRate > 0) out["handshake_rate"] = o.handshakeRate;
      out["handshakes"] = stats_.handshakes;
      out["handshakes_per_s"] = window > 0 ? stats_.handshakes / window : 0;
      human << "handshakes, " << o.concurrency
            << " concurrent: " << static_cast<uint64_t>(window > 0 ? stats_.handshakes / window : 0)
            << "/s";
    } else {
      out["held"] = stats_.handshakes;
      out["held_at_end"] = heldAtEnd_;
      human << "hold: " << stats_.handshakes << " held, " << heldAtEnd_ << " still open at end";
    }
    if (!stats_.latencyUs.empty()) {
      const auto& v = stats_.latencyUs;
      out["latency_samples"] = v.size();
      out["p50_us"] = percentile(v, 0.50);
      out["p90_us"] = percentile(v, 0.90);
      out["p99_us"] = percentile(v, 0.99);
      out["p999_us"] = percentile(v, 0.999);
      out["max_us"] = v.back();
      human << ", latency p50 " << percentile(v, 0.50) / 1000.0 << " ms p90 "
            << percentile(v, 0.90) / 1000.0 << " ms p99 " << percentile(v, 0.99) / 1000.0
            << " ms max " << v.back() / 1000.0 << " ms";
    }
    if (measured && o.mode != "hold") {
      nlohmann::json cpu = {{"loadgen_us", cpuEnd_.self - cpuStart_.self}};
      if (!o.watchPids.empty()) cpu["proxy_us"] = cpuEnd_.proxy - cpuStart_.proxy;
      if (o.backendPid > 0) cpu["backend_us"] = cpuEnd_.backend - cpuStart_.backend;
      out["cpu"] = cpu;
      const uint64_t units = o.mode == "handshakes" ? stats_.handshakes : stats_.messages;
      if (!o.watchPids.empty() && units > 0) {
        const double perUnit = (cpuEnd_.proxy - cpuStart_.proxy) / static_cast<double>(units);
        out["proxy_cpu_us_per_unit"] = perUnit;
        human << ", proxy CPU " << perUnit << " us/"
              << (o.mode == "handshakes" ? "handshake" : "msg");
      }
      // Machine-wide: everything sent on loopback in the window (client, proxy and backend, and
      // any other load generator running beside this one).
      if (units > 0 && cpuStart_.segments >= 0 && cpuEnd_.segments >= 0) {
        out["tcp_segments_per_unit"] =
            (cpuEnd_.segments - cpuStart_.segments) / static_cast<double>(units);
      }
    }
    if (o.tls) human << ", " << stats_.tlsResumed << " resumed";
    human << ", " << stats_.connectFailures << " connect failures, " << stats_.errors << " errors"
          << (hardStopped_ ? " (TIMED OUT)" : "");
    std::cerr << human.str() << std::endl;
    std::cout << out.dump() << std::endl;
    const uint64_t done =
        o.mode == "hold" || o.mode == "handshakes" ? stats_.handshakes : stats_.messages;
    return !hardStopped_ && done > 0 && stats_.tlsResumed == 0 ? 0 : 1;
  }

  const Options& options_;
  std::unique_ptr<TlsClient> tls_;
  asio::io_context io_;
  tcp::endpoint endpoint_;
  asio::steady_timer timer_;
  asio::steady_timer hardStop_;
  std::unique_ptr<asio::steady_timer> capTimer_;
  asio::signal_set signals_;
  Stats stats_;
  std::vector<uint8_t> payload_;
  std::vector<std::shared_ptr<EchoConnection<Ws>>> connections_;
  std::vector<std::unique_ptr<Held>> held_;
  int attempted_ = 0;
  int activeLoops_ = 0;
  int opened_ = 0;
  uint64_t heldAtEnd_ = 0;
  bool stopping_ = false;
  bool closing_ = false;
  bool windowOpened_ = false;
  bool windowClosed_ = false;
  bool hardStopped_ = false;
  Clock::time_point closeDeadline_;
  Clock::time_point windowStart_;
  Clock::time_point windowEnd_;
  CpuSample cpuStart_;
  CpuSample cpuEnd_;
};

}  // namespace
}  // namespace wsgate::bench

int main(int argc, char** argv) {
  wsgate::bench::Options o;
  CLI::App app{"wsgate-loadgen: WebSocket load generator (echo, rate, handshakes, hold)"};
  app.add_option("mode", o.mode, "echo, rate, handshakes or hold")
      ->required()
      ->check(CLI::IsMember({"echo", "rate", "handshakes", "hold"}));
  app.add_option("--host", o.host, "target IPv4/IPv6 address")->capture_default_str();
  app.add_option("-p,--port", o.port, "target port")->required();
  app.add_option("--path", o.path, "request path")->capture_default_str();
  app.add_option("-c,--connections", o.connections, "echo/rate/hold: connections")
      ->capture_default_str();
  app.add_option("-k,--inflight", o.inflight, "echo: messages in flight per connection")
      ->capture_default_str();
  app.add_option("-s,--size", o.size, "echo/rate: message size in bytes")->capture_default_str();
  app.add_option("-d,--duration", o.duration, "measurement window, seconds")->capture_default_str();
  app.add_option("-n,--messages", o.maxMessages, "echo/rate: end the window after this many")
      ->capture_default_str();
  app.add_option("-r,--rate", o.rate, "rate: messages per second, all connections together")
      ->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "handshakes/hold: parallel loops")
      ->capture_default_str();
  app.add_option("--handshake-rate", o.handshakeRate,
                 "handshakes: start this many per second in total (default: as fast as they can)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--abrupt-close", o.abruptClose,
               "handshakes: send the close frame and close the connection without waiting for "
               "the reply");
  app.add_flag("--text", o.text,
               "echo/rate: send text messages (ASCII 'x'), e.g. through a utf8 filter");
  app.add_option("--hold", o.hold, "hold: seconds to keep the connections at most")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "seconds of load before the window opens")
      ->capture_default_str();
  app.add_option("--connect-timeout", o.connectTimeout, "seconds per connect + upgrade")
      ->capture_default_str();
  app.add_option("--watch-pid", o.watchPids, "proxy process(es) whose CPU time to sample");
  app.add_option("--backend-pid", o.backendPid, "backend process whose CPU time to sample");
  app.add_flag("--tls", o.tls,
               "wss: TLS to the target, every handshake a full one (no session cache, no "
               "tickets, no resumption)");
  app.add_option("--server-name", o.serverName, "--tls: SNI, and the name verified with --ca");
  app.add_option("--ca", o.caFile,
                 "--tls: verify the target's certificate against this PEM file (default: no "
                 "verification)")
      ->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  if (o.connections <= 0 || o.inflight <= 0 || o.rate <= 0 || o.concurrency <= 0 ||
      o.duration <= 0) {
    std::cerr << "wsgate-loadgen: counts, rate and duration must be positive\n";
    return 2;
  }
  try {
    if (o.tls) return wsgate::bench::Runner<wsgate::bench::TlsWs>(o).run();
    return wsgate::bench::Runner<wsgate::bench::PlainWs>(o).run();
  } catch (const std::exception& e) {  // a TLS context that cannot be set up (--ca)
    std::cerr << "wsgate-loadgen: " << e.what() << "\n";
    return 2;
  }
}
