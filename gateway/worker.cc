#include "gateway/worker.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

Worker::Worker(unsigned index, std::shared_ptr<const config::Config> config)
    // One thread per io_context: Asio may skip its reactor locking.
    : buffers_(stats_, kMaxLentBuffers, kMaxCachedBuffers),
      read_buffer_(std::make_unique<uint8_t[]>(kReadBufferSize)),
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      sweep_timer_(io_),
      context_{io_, stats_, buffers_, {read_buffer_.get(), kReadBufferSize}, index},
      table_(std::make_shared<RoutingTable>(context_, std::move(config))) {}

Worker::~Worker() { stop(); }

void Worker::addListener(size_t listener_index, boost::asio::ip::tcp::acceptor acceptor) {
  listeners_.push_back(
      std::make_unique<Listener>(context_, std::move(acceptor), listener_index, table_));
}

void Worker::start() {
  for (auto& listener : listeners_) listener->start();
  sweepBuffersLater();
  thread_ = std::thread([this] {
    try {
      io_.run();
    } catch (const std::exception& e) {
      spdlog::critical("worker {} stopped: {}", context_.index, e.what());
      std::abort();
    }
  });
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
  boost::asio::post(io_, [this] {
    for (auto& listener : listeners_) listener->stop();
    sweep_timer_.cancel();
    io_.stop();
  });
  thread_.join();
}

}  // namespace wsgate::gateway
