#include "gateway/worker.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

Worker::Worker(unsigned index, std::shared_ptr<const config::Config> config)
    // One thread per io_context: Asio may skip its reactor locking.
    : read_buffer_(std::make_unique<uint8_t[]>(kReadBufferSize)),
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      context_{io_, stats_, {read_buffer_.get(), kReadBufferSize}, index},
      table_(std::make_shared<RoutingTable>(context_, std::move(config))) {}

Worker::~Worker() { stop(); }

void Worker::addListener(size_t listener_index, boost::asio::ip::tcp::acceptor acceptor) {
  listeners_.push_back(
      std::make_unique<Listener>(context_, std::move(acceptor), listener_index, table_));
}

void Worker::start() {
  for (auto& listener : listeners_) listener->start();
  thread_ = std::thread([this] {
    try {
      io_.run();
    } catch (const std::exception& e) {
      spdlog::critical("worker {} stopped: {}", context_.index, e.what());
      std::abort();
    }
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    for (auto& listener : listeners_) listener->stop();
    io_.stop();
  });
  thread_.join();
}

}  // namespace wsgate::gateway
