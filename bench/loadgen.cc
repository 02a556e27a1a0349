// wsgate-loadgen: the WebSocket load generator of the benchmark. One thread, Beast clients.
//   echo        N connections, K messages in flight each, size S, for D seconds: msgs/s, latency
//   rate        N connections sending R messages/s in total: latency at a fixed rate
//   handshakes  C concurrent loops of connect + upgrade + close for D seconds: handshakes/s
//   hold        open N idle connections, print "held N", keep them H seconds (or until SIGTERM)
// Prints one JSON line with the results on stdout.
#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <memory>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace wsgate::bench {
namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxSamples = 4'000'000;

struct Options {
  std::string mode = "echo";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/";
  int connections = 50;
  int inflight = 8;
  size_t size = 64;
  double duration = 5;
  double rate = 1000;
  int concurrency = 16;
  double hold = 30;
};

struct Stats {
  uint64_t messages = 0;
  uint64_t errors = 0;
  uint64_t handshakes = 0;
  std::vector<uint32_t> latency_us;
  void record(Clock::duration d) {
    ++messages;
    if (latency_us.size() < kMaxSamples) {
      latency_us.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(d).count()));
    }
  }
};

using Ws = websocket::stream<tcp::socket>;

asio::awaitable<bool> open(Ws& ws, const Options& o, tcp::endpoint endpoint) {
  auto [ec] = co_await ws.next_layer().async_connect(endpoint, kToken);
  if (ec) co_return false;
  ws.next_layer().set_option(tcp::no_delay(true));
  ws.read_message_max(256 * 1024 * 1024);
  ws.auto_fragment(false);
  auto [hec] = co_await ws.async_handshake(o.host, o.path, kToken);
  co_return !hec;
}

// One echo connection: keeps `inflight` messages outstanding (echo) or sends on a timer (rate).
class EchoConnection : public std::enable_shared_from_this<EchoConnection> {
 public:
  EchoConnection(asio::io_context& io, const Options& o, Stats& stats,
                 const std::vector<uint8_t>& payload, const bool& stopping)
      : ws_(io), timer_(io), o_(o), stats_(stats), payload_(payload), stopping_(stopping) {}

  asio::awaitable<void> run(tcp::endpoint endpoint, Clock::duration interval) {
    auto self = shared_from_this();
    if (!co_await open(ws_, o_, endpoint)) {
      ++stats_.errors;
      co_return;
    }
    ws_.binary(true);
    if (interval.count() == 0) {
      pending_ = o_.inflight;
      maybeWrite();
    } else {
      tick(interval);
    }
    beast::flat_buffer buffer;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buffer, kToken);
      if (ec) break;
      buffer.consume(buffer.size());
      if (!sent_.empty()) {
        stats_.record(Clock::now() - sent_.front());
        sent_.pop_front();
      }
      if (stopping_) {
        if (sent_.empty()) break;
        continue;
      }
      if (interval.count() == 0) {
        ++pending_;
        maybeWrite();
      }
    }
    timer_.cancel();
  }

  void close() {
    timer_.cancel();
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](auto) {});
  }

 private:
  void tick(Clock::duration interval) {
    timer_.expires_after(interval);
    timer_.async_wait([self = shared_from_this(), interval](boost::system::error_code ec) {
      if (ec || self->stopping_) return;
      ++self->pending_;
      self->maybeWrite();
      self->tick(interval);
    });
  }

  void maybeWrite() {
    if (writing_ || pending_ == 0 || stopping_) return;
    writing_ = true;
    --pending_;
    sent_.push_back(Clock::now());
    ws_.async_write(asio::buffer(payload_),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec) {
                        ++self->stats_.errors;
                        return;
                      }
                      self->maybeWrite();
                    });
  }

  Ws ws_;
  asio::steady_timer timer_;
  const Options& o_;
  Stats& stats_;
  const std::vector<uint8_t>& payload_;
  const bool& stopping_;
  std::deque<Clock::time_point> sent_;
  int pending_ = 0;
  bool writing_ = false;
};

asio::awaitable<void> handshakeLoop(asio::io_context& io, const Options& o, Stats& stats,
                                    tcp::endpoint endpoint, Clock::time_point until) {
  while (Clock::now() < until) {
    Ws ws(io);
    if (!co_await open(ws, o, endpoint)) {
      ++stats.errors;
      continue;
    }
    ++stats.handshakes;
    auto [ec] = co_await ws.async_close(websocket::close_code::normal, kToken);
    beast::flat_buffer buffer;
    while (!ec) std::tie(ec, std::ignore) = co_await ws.async_read(buffer, kToken);
  }
}

asio::awaitable<void> holdOne(asio::io_context& io, const Options& o, Stats& stats,
                              tcp::endpoint endpoint, std::vector<std::unique_ptr<Ws>>& held,
                              int count) {
  for (int i = 0; i < count; ++i) {
    auto ws = std::make_unique<Ws>(io);
    if (co_await open(*ws, o, endpoint)) {
      ++stats.handshakes;
      held.push_back(std::move(ws));
    } else {
      ++stats.errors;
    }
  }
}

uint32_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

int run(const Options& o) {
  asio::io_context io(1);
  const tcp::endpoint endpoint(asio::ip::make_address(o.host), o.port);
  Stats stats;
  bool stopping = false;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.duration));
  std::vector<std::shared_ptr<EchoConnection>> connections;
  std::vector<std::unique_ptr<Ws>> held;
  std::vector<uint8_t> payload(o.size, 'x');
  asio::steady_timer deadline(io);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, auto) { io.stop(); });

  if (o.mode == "echo" || o.mode == "rate") {
    Clock::duration interval{0};
    if (o.mode == "rate") {
      interval = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(o.connections / o.rate));
    }
    for (int i = 0; i < o.connections; ++i) {
      auto c = std::make_shared<EchoConnection>(io, o, stats, payload, stopping);
      connections.push_back(c);
      asio::co_spawn(io, c->run(endpoint, interval), asio::detached);
    }
    deadline.expires_at(until);
    deadline.async_wait([&](auto) {
      stopping = true;
      // Let in-flight echoes land, then close everything.
      deadline.expires_after(std::chrono::seconds(2));
      deadline.async_wait([&](auto) {
        for (auto& c : connections) c->close();
        deadline.expires_after(std::chrono::seconds(2));
        deadline.async_wait([&](auto) { io.stop(); });
      });
    });
  } else if (o.mode == "handshakes") {
    for (int i = 0; i < o.concurrency; ++i) {
      asio::co_spawn(io, handshakeLoop(io, o, stats, endpoint, until), asio::detached);
    }
    deadline.expires_at(until + std::chrono::seconds(3));
    deadline.async_wait([&](auto) { io.stop(); });
  } else if (o.mode == "hold") {
    const int per = (o.connections + o.concurrency - 1) / o.concurrency;
    int remaining = o.connections;
    for (int i = 0; i < o.concurrency && remaining > 0; ++i) {
      const int n = std::min(per, remaining);
      remaining -= n;
      asio::co_spawn(io, holdOne(io, o, stats, endpoint, held, n), asio::detached);
    }
    // Report once every connection is up (or failed), then hold.
    auto poll = std::make_shared<std::function<void()>>();
    *poll = [&, poll] {
      if (static_cast<int>(stats.handshakes + stats.errors) >= o.connections) {
        std::cout << "held " << stats.handshakes << std::endl;
        deadline.expires_after(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(o.hold)));
        deadline.async_wait([&](auto) { io.stop(); });
        return;
      }
      deadline.expires_after(std::chrono::milliseconds(20));
      deadline.async_wait([poll](auto ec) {
        if (!ec) (*poll)();
      });
    };
    (*poll)();
  } else {
    std::cerr << "unknown mode " << o.mode << "\n";
    return 2;
  }
  io.run();
  const double seconds = std::chrono::duration<double>(std::min(Clock::now(), until) - start).count();
  nlohmann::json out = {{"mode", o.mode},        {"size", o.size},
                        {"connections", o.connections}, {"seconds", seconds},
                        {"messages", stats.messages}, {"errors", stats.errors},
                        {"handshakes", stats.handshakes}};
  if (!stats.latency_us.empty()) {
    out["msgs_per_s"] = stats.messages / seconds;
    out["p50_us"] = percentile(stats.latency_us, 0.50);
    out["p90_us"] = percentile(stats.latency_us, 0.90);
    out["p99_us"] = percentile(stats.latency_us, 0.99);
    out["max_us"] = percentile(stats.latency_us, 1.0);
  }
  if (o.mode == "handshakes") out["handshakes_per_s"] = stats.handshakes / seconds;
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace wsgate::bench

int main(int argc, char** argv) {
  wsgate::bench::Options o;
  CLI::App app{"wsgate-loadgen: WebSocket load generator"};
  app.add_option("mode", o.mode, "echo, rate, handshakes or hold")->required();
  app.add_option("--host", o.host, "IP address");
  app.add_option("--port", o.port)->required();
  app.add_option("--path", o.path);
  app.add_option("-c,--connections", o.connections);
  app.add_option("-k,--inflight", o.inflight, "echo: messages in flight per connection");
  app.add_option("-s,--size", o.size, "message size in bytes");
  app.add_option("-d,--duration", o.duration, "seconds");
  app.add_option("-r,--rate", o.rate, "rate: messages per second in total");
  app.add_option("--concurrency", o.concurrency, "handshakes/hold: parallel loops");
  app.add_option("--hold", o.hold, "hold: seconds to keep the connections");
  CLI11_PARSE(app, argc, argv);
  return wsgate::bench::run(o);
}
