// Process-wide logging: one line per event on stderr, in the format operators and tests parse
// ("2024-01-02T03:04:05.678 info listener public listening on 127.0.0.1:8080").
//
// Lines are queued for one background writer thread, so a worker never waits on stderr or on
// another worker: the queue is bounded, and when it is full the oldest queued line is dropped
// and counted (wsgate_log_messages_dropped_total). Whatever is queued is written before the
// process exits normally (the Logging object's destructor), so config errors, a failed bind and
// the lines of a stop signal are never lost.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <spdlog/common.h>

namespace wsgate::gateway {

class Logging {
 public:
  // Installs the default logger; one Logging per process, outliving everything that logs.
  explicit Logging(spdlog::level::level_enum level);
  // Writes every queued line, then stops the writer thread.
  ~Logging();
  Logging(const Logging&) = delete;
  Logging& operator=(const Logging&) = delete;

  // Lines dropped so far because the queue was full. Any thread.
  static uint64_t droppedLines();
  // For the paths that abort: waits, bounded in time, until the queued lines are written.
  static void drainBeforeAbort();
};

// Exports wsgate_log_messages_dropped_total, read at scrape time.
class LogCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace wsgate::gateway
