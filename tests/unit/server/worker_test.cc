// What escapes every handler reaches the worker's loop, which counts it and goes on serving
// instead of ending the process.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "server/worker.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;

TEST(WorkerTest, KeepsRunningAfterAHandlerThrows) {
  auto config = std::make_shared<config::Config>();
  Worker worker(0, config, TlsContexts::build(*config));
  std::atomic<bool> served_after{false};
  // Queued before start(): the worker's io_context is touched from its own thread only after.
  boost::asio::post(worker.io(), [] { throw std::runtime_error("handler broke"); });
  boost::asio::post(worker.io(), [] { throw 42; });
  boost::asio::post(worker.io(), [&] { served_after = true; });
  worker.start();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!served_after && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(served_after);
  worker.stop();
  int64_t failures = -1;
  worker.stats().forEach([&](const WorkerStats::Key& key, int64_t value) {
    if (key.first == Metric::kWorkerFailures) failures = value;
  });
  EXPECT_EQ(failures, 2);
}

}  // namespace
}  // namespace wsgate::gateway
