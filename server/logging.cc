#include "server/logging.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

namespace {

// Enough for any burst of startup or warning lines; a flood of debug lines overruns it, which
// is the point: the oldest lines go, the workers do not wait.
constexpr size_t kQueuedLines = 2048;
constexpr auto kAbortDrainTimeout = std::chrono::seconds(1);

struct State {
  std::shared_ptr<spdlog::details::thread_pool> pool;
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink;
};

std::mutex state_mutex;
State state;  // guarded by state_mutex; set between Logging's constructor and destructor

}  // namespace

Logging::Logging(spdlog::level::level_enum level) {
  auto pool = std::make_shared<spdlog::details::thread_pool>(kQueuedLines, 1);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  // overrun_oldest: a full queue costs a log line, never a worker's time. No flush_on: the
  // sink flushes every line itself, and an async flush that waits (spdlog >= 1.14) would put the
  // worker back behind stderr.
  auto logger = std::make_shared<spdlog::async_logger>(
      "wsgate", sink, pool, spdlog::async_overflow_policy::overrun_oldest);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  std::lock_guard lock(state_mutex);
  state = {std::move(pool), std::move(sink)};
}

Logging::~Logging() {
  State last;
  {
    std::lock_guard lock(state_mutex);
    last = std::move(state);
    state = {};
  }
  // Drops the loggers; then the pool's destructor writes what is queued and joins its thread.
  spdlog::shutdown();
  last.pool.reset();
}

uint64_t Logging::droppedLines() {
  std::lock_guard lock(state_mutex);
  return state.pool ? state.pool->overrun_counter() : 0;
}

void Logging::drainBeforeAbort() {
  State current;
  {
    std::lock_guard lock(state_mutex);
    current = state;
  }
  if (!current.pool) return;
  const auto deadline = std::chrono::steady_clock::now() + kAbortDrainTimeout;
  while (current.pool->queue_size() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Takes the sink's lock, so the line being written when the queue emptied is out too.
  current.sink->flush();
}

std::vector<prometheus::MetricFamily> LogCollector::Collect() const {
  prometheus::MetricFamily family;
  family.name = "wsgate_log_messages_dropped_total";
  family.help = "Log lines dropped because stderr could not keep up (the log queue was full).";
  family.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric metric;
  metric.counter.value = static_cast<double>(Logging::droppedLines());
  family.metric.push_back(std::move(metric));
  return {std::move(family)};
}

}  // namespace wsgate::gateway
