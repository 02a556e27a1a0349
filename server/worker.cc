#include "server/worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "server/logging.h"

namespace wsgate::gateway {

namespace {

int makeStopSignal() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    throw boost::system::system_error(errno, boost::system::system_category(),
                                      "eventfd for stopping a worker");
  }
  return fd;
}

}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const config::Config> config,
               std::shared_ptr<const TlsContexts> tls)
    // One thread per io_context, never touched from another: Asio runs it without locks.
    : buffers_(stats_, kMaxLentBuffers, kMaxCachedBuffers),
      read_buffer_(std::make_unique<uint8_t[]>(kReadBufferSize)),
      // Only binds a reference to io_, constructed next.
      context_{io_, stats_, buffers_, {read_buffer_.get(), kReadBufferSize}, index},
      failures_(stats_.cell(Metric::kWorkerFailures, {})),
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE),
      sweep_timer_(io_),
      stop_signal_(io_, makeStopSignal()),
      table_(std::make_shared<RoutingTable>(context_, std::move(config), std::move(tls))) {}

Worker::~Worker() { stop(); }

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
                            sweep_timer_.cancel();
                            io_.stop();
                          });
  thread_ = std::thread([this] { run(); });
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
  const uint64_t one = 1;
  if (::write(stop_signal_.native_handle(), &one, sizeof one) != sizeof one) {
    spdlog::critical("worker {}: cannot signal it to stop: {}", context_.index,
                     std::strerror(errno));
    Logging::drainBeforeAbort();
    std::abort();
  }
  thread_.join();
}

}  // namespace wsgate::gateway
