#include "server/worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "server/logging.h"

namespace wsgate::gateway {

namespace {

int makeEventFd() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    throw boost::system::system_error(errno, boost::system::system_category(),
                                      "eventfd for signalling a worker");
  }
  return fd;
}

// Wakes the wait on the eventfd `signal`; false (errno set) when it cannot be written.
bool raiseSignal(boost::asio::posix::stream_descriptor& signal) {
  const uint64_t one = 1;
  return ::write(signal.native_handle(), &one, sizeof one) == sizeof one;
}

// Resets `signal` after its wait woke, so that the next raise wakes the next wait.
void takeSignal(boost::asio::posix::stream_descriptor& signal) {
  uint64_t count = 0;
  if (::read(signal.native_handle(), &count, sizeof count) < 0) return;  // already reset
}

}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const config::Config> config,
               std::shared_ptr<const TlsContexts> tls)
    // One thread per io_context, never touched from another: Asio runs it without locks.
    : buffers_(stats_, kMaxLentBuffers, kMaxCachedBuffers),
      read_buffer_(std::make_unique<uint8_t[]>(kReadBufferSize)),
      // Only binds a reference to io_, constructed next.
      deadlines_(io_),
      context_{io_, stats_, buffers_, {read_buffer_.get(), kReadBufferSize}, deadlines_, index,
               &live_},
      failures_(stats_.cell(Metric::kWorkerFailures, {})),
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE),
      sweep_timer_(io_),
      stop_signal_(io_, makeEventFd()),
      drain_signal_(io_, makeEventFd()),
      swap_signal_(io_, makeEventFd()),
      drain_timer_(io_),
      drain_closed_(stats_.cell(Metric::kDrainClosedSessions, {})),
      table_(std::make_shared<RoutingTable>(context_, std::move(config), std::move(tls))) {}

Worker::~Worker() {
  stop();
  deadlines_.close();
  for (const ListenerPlan& unused : next_plan_) {
    if (unused.fd >= 0) ::close(unused.fd);
  }
}

void Worker::addListener(size_t listener_index, boost::asio::ip::tcp::acceptor acceptor,
                         std::atomic<uint32_t>& open) {
  listeners_.push_back(
      std::make_unique<Listener>(context_, std::move(acceptor), listener_index, table_, open));
}

void Worker::start() {
  for (auto& listener : listeners_) listener->start();
  sweepBuffersLater();
  stop_signal_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code&) {
                            for (auto& listener : listeners_) listener->stop();
                            for (auto& listener : retired_) listener->stop();
                            sweep_timer_.cancel();
                            drain_timer_.cancel();
                            io_.stop();
                          });
  waitForDrain();
  waitForSwap();
  thread_ = std::thread([this] { run(); });
}

void Worker::swapConfig(std::shared_ptr<const config::Config> config,
                        std::shared_ptr<const TlsContexts> tls, std::vector<ListenerPlan> plan) {
  {
    std::lock_guard lock(swap_mutex_);
    for (const ListenerPlan& unused : next_plan_) {
      if (unused.fd >= 0) ::close(unused.fd);  // a swap not yet taken, replaced by this one
    }
    next_config_ = std::move(config);
    next_tls_ = std::move(tls);
    next_plan_ = std::move(plan);
  }
  if (!raiseSignal(swap_signal_)) {
    spdlog::error("worker {}: cannot signal it a new config: {}", context_.index,
                  std::strerror(errno));
  }
}

// The listeners read the worker's table at each accept: replacing it is the whole swap.
void Worker::waitForSwap() {
  swap_signal_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code& ec) {
                            if (ec) return;
                            takeSignal(swap_signal_);
                            std::shared_ptr<const config::Config> config;
                            std::shared_ptr<const TlsContexts> tls;
                            std::vector<ListenerPlan> plan;
                            {
                              std::lock_guard lock(swap_mutex_);
                              config = std::move(next_config_);
                              tls = std::move(next_tls_);
                              plan = std::move(next_plan_);
                            }
                            if (config) {
                              table_ = std::make_shared<RoutingTable>(context_, std::move(config),
                                                                      std::move(tls));
                              applyPlan(std::move(plan));
                            }
                            waitForSwap();
                          });
}

// Runs right after the table was replaced, so that every listener's index is the one of the
// new config before the next accept.
void Worker::applyPlan(std::vector<ListenerPlan> plan) {
  std::vector<std::unique_ptr<Listener>> old = std::move(listeners_);
  listeners_.clear();
  const bool draining = drain_start_ != std::chrono::steady_clock::time_point{};
  for (size_t i = 0; i < plan.size(); ++i) {
    ListenerPlan& entry = plan[i];
    if (entry.fd < 0) {
      auto it = std::find_if(old.begin(), old.end(), [&](const std::unique_ptr<Listener>& l) {
        return l && l->name() == entry.name;
      });
      if (it == old.end()) {
        spdlog::error("worker {}: reload kept listener {}, which it does not have",
                      context_.index, entry.name);
        continue;
      }
      (*it)->setIndex(i);
      listeners_.push_back(std::move(*it));
      continue;
    }
    boost::asio::ip::tcp::acceptor acceptor(io_);
    boost::system::error_code ec;
    acceptor.assign(entry.v6 ? boost::asio::ip::tcp::v6() : boost::asio::ip::tcp::v4(), entry.fd,
                    ec);
    if (ec) {
      ::close(entry.fd);
      spdlog::error("worker {}: listener {}: {}", context_.index, entry.name, ec.message());
      continue;
    }
    listeners_.push_back(
        std::make_unique<Listener>(context_, std::move(acceptor), i, table_, *entry.open));
    if (draining) {
      listeners_.back()->stop();
    } else {
      listeners_.back()->start();
    }
  }
  for (auto& listener : old) {
    if (!listener) continue;
    listener->stop();
    retired_.push_back(std::move(listener));
  }
}

void Worker::drain(std::chrono::milliseconds spread) {
  drain_spread_ms_.store(spread.count());
  if (!raiseSignal(drain_signal_)) {
    spdlog::error("worker {}: cannot signal it to drain: {}", context_.index,
                  std::strerror(errno));
  }
}

void Worker::waitForDrain() {
  drain_signal_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec) return;
                             takeSignal(drain_signal_);
                             if (drain_start_ != std::chrono::steady_clock::time_point{}) return;
                             for (auto& listener : listeners_) listener->stop();
                             logDrain();
                             drain_start_ = std::chrono::steady_clock::now();
                             drain_spread_ = std::chrono::milliseconds(drain_spread_ms_.load());
                             drainStep();
                           });
}

// Which listeners and routes the drain is about to close, for the log: a few lines per drain.
void Worker::logDrain() const {
  std::map<std::pair<std::string_view, std::string_view>, size_t> counts;
  live_.forEach([&](const LiveSession& s) { ++counts[{s.listenerName(), s.routeName()}]; });
  for (const auto& [tags, n] : counts) {
    spdlog::info("worker {}: draining {} session(s) of listener {}, route {}", context_.index, n,
                 tags.first, tags.second);
  }
}

// The i-th of N sessions is asked at start + spread × i / N, so that clients reconnect
// gradually, not all in the same second. N grows with sessions that start meanwhile (their
// handshakes were under way): they are behind schedule, so they are asked at once.
void Worker::drainStep() {
  constexpr auto kTick = std::chrono::milliseconds(20);
  const auto elapsed = std::chrono::steady_clock::now() - drain_start_;
  const size_t total = drained_ + live_.listed();
  size_t due = total;
  if (elapsed < drain_spread_ && drain_spread_.count() > 0) {
    const double share = std::chrono::duration<double>(elapsed) / drain_spread_;
    due = static_cast<size_t>(share * static_cast<double>(total)) + 1;
  }
  while (drained_ < due) {
    LiveSession* session = live_.take();
    if (!session) break;
    ++drained_;
    drain_closed_.add(1);
    session->goAway(1001, "server shutting down");
  }
  drain_timer_.expires_after(elapsed < drain_spread_ ? kTick : kTick * 5);
  drain_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) drainStep();
  });
}

// Sessions and handshakes turn their own failures into a close; what still escapes a handler
// must not end every other connection of this worker. Asio lets run() go on after a handler
// threw: the handler is gone, everything else stays queued.
void Worker::run() {
  for (;;) {
    try {
      io_.run();
      return;  // stopped
    } catch (const std::exception& e) {
      failures_.add(1);
      spdlog::error("worker {}: a handler failed: {}", context_.index, e.what());
    } catch (...) {
      failures_.add(1);
      spdlog::error("worker {}: a handler failed with an unknown exception", context_.index);
    }
  }
}

void Worker::sweepBuffersLater() {
  sweep_timer_.expires_after(kBufferSweepInterval);
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    buffers_.sweep();
    sweepBuffersLater();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  if (!raiseSignal(stop_signal_)) {
    spdlog::critical("worker {}: cannot signal it to stop: {}", context_.index,
                     std::strerror(errno));
    Logging::drainBeforeAbort();
    std::abort();
  }
  thread_.join();
}

}  // namespace wsgate::gateway
