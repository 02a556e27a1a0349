// One worker thread: its own io_context, listening sockets, metrics, read buffer and every
// session it accepted (client and upstream sockets alike). Nothing here is shared with other
// workers except the immutable config snapshot and the metric cells read at scrape time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.h"
#include "proxy/listener.h"
#include "io/relay_buffers.h"
#include "routing/routing_table.h"
#include "stats/stats.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

class Worker {
 public:
  static constexpr size_t kReadBufferSize = RelayBuffers::kBufferSize;
  // Relay buffers lent at once (64 MiB) and kept free for reuse (2 MiB), per worker.
  static constexpr size_t kMaxLentBuffers = 1024;
  static constexpr size_t kMaxCachedBuffers = 32;
  static constexpr std::chrono::seconds kBufferSweepInterval{1};

  Worker(unsigned index, std::shared_ptr<const config::Config> config,
         std::shared_ptr<const TlsContexts> tls);
  ~Worker();

  boost::asio::io_context& io() { return io_; }
  const WorkerStats& stats() const { return stats_; }

  // Before start(): adopts a bound acceptor for config listener `listener_index`; `open`
  // counts that listener's connections across workers and outlives the worker.
  void addListener(size_t listener_index, boost::asio::ip::tcp::acceptor acceptor,
                   std::atomic<uint32_t>& open);
  void start();
  // From any thread: stops accepting and asks every session to go away (1001), spread evenly
  // over `spread`; sessions that start later (handshakes under way) are asked at once.
  void drain(std::chrono::milliseconds spread);
  // One listener of a new config, in its order: a listening socket bound for this worker
  // (`fd`), or -1 to keep the one the worker has under that name.
  struct ListenerPlan {
    std::string name;
    int fd = -1;
    bool v6 = false;
    std::atomic<uint32_t>* open = nullptr;  // outlives the worker
  };
  // From any thread: new connections on this worker use `config` from now on, on the listeners
  // of `plan` (the worker's listeners not in it stop accepting); handshakes and sessions under
  // way keep the snapshot they started with. The worker owns the descriptors in `plan`.
  void swapConfig(std::shared_ptr<const config::Config> config,
                  std::shared_ptr<const TlsContexts> tls, std::vector<ListenerPlan> plan);
  // Sessions alive on this worker; any thread.
  size_t liveSessions() const { return live_.alive(); }
  // Stops accepting and ends the thread; open connections are dropped.
  void stop();

 private:
  void run();
  void sweepBuffersLater();
  void waitForDrain();
  void logDrain() const;
  void waitForSwap();
  void applyPlan(std::vector<ListenerPlan> plan);
  void drainStep();

  // Declared before io_, so destroyed after it: the handlers io_ destroys with it (sessions,
  // handshakes) still count themselves in stats_, give their buffers back and reach both through
  // context_.
  WorkerStats stats_;
  RelayBuffers buffers_;
  std::unique_ptr<uint8_t[]> read_buffer_;
  LiveSessions live_;
  // Its timer is released in ~Worker before io_ goes; handshakes and sessions destroyed with io_
  // only unlink their entries.
  Deadlines deadlines_;
  WorkerContext context_;
  Cell& failures_;
  boost::asio::io_context io_;
  // Declared after io_, so destroyed before it, as Asio requires of I/O objects. Handlers that
  // point at them (the listeners' accepts, the stop signal's wait) are only ever destroyed
  // once run() has returned, never invoked.
  boost::asio::steady_timer sweep_timer_;
  // stop() writes here from another thread: the io_context itself is never touched from outside
  // its thread, so it runs without locks.
  boost::asio::posix::stream_descriptor stop_signal_;
  // drain() writes here; the spread travels in drain_spread_ms_.
  boost::asio::posix::stream_descriptor drain_signal_;
  std::atomic<int64_t> drain_spread_ms_{0};
  // swapConfig() leaves the next snapshot here (the latest wins) and writes swap_signal_.
  boost::asio::posix::stream_descriptor swap_signal_;
  std::mutex swap_mutex_;
  std::shared_ptr<const config::Config> next_config_;
  std::shared_ptr<const TlsContexts> next_tls_;
  std::vector<ListenerPlan> next_plan_;
  boost::asio::steady_timer drain_timer_;
  std::chrono::steady_clock::time_point drain_start_{};
  std::chrono::milliseconds drain_spread_{0};
  size_t drained_ = 0;  // sessions asked to go away so far
  Cell& drain_closed_;
  std::shared_ptr<const RoutingTable> table_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  // Listeners a reload removed: stopped, kept until the worker ends, since their cancelled
  // accepts still point at them (a few hundred bytes per removal).
  std::vector<std::unique_ptr<Listener>> retired_;
  std::thread thread_;
};

}  // namespace wsgate::gateway
