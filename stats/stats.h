// Metrics without shared atomics on the hot path. Every worker owns a `WorkerStats`: a table of
// cells keyed by metric and label values, created on first use (under a mutex, once per session
// or handshake, never per frame) and never moved, so a session keeps plain pointers to its
// cells and bumps them with relaxed load+store by its one writer thread. The admin thread sums
// all workers' cells at scrape time (see StatsCollector).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsgate::gateway {

// Every metric wsgate exports, declared once (docs/metrics.md lists them).
enum class Metric : uint8_t {
  kAcceptFailures,
  kBackpressurePauses,
  kBytes,
  kCloseCodes,
  kConnectionsActive,
  kConnectionsTotal,
  kDrainClosedSessions,
  kFilterRejections,
  kFrames,
  kHandshakeRejections,
  kKeepalivePings,
  kKeepaliveTimeouts,
  kMessages,
  kProtocolErrors,
  kRelayBufferBytes,
  kSessionFailures,
  kThrottledSeconds,
  kTlsHandshakeFailures,
  kTlsHandshakes,
  kUpstreamConnectFailures,
  kUpstreamTlsFailures,
  kWorkerFailures,
  kCount,
};

struct MetricInfo {
  std::string_view name;
  std::string_view help;
  bool gauge;
  std::vector<std::string_view> labels;
  double scale = 1.0;  // exported value = cell value × scale (cells are integers)
};

const MetricInfo& metricInfo(Metric metric);

// One value with a single writer (its worker thread) and any number of readers.
class Cell {
 public:
  void add(int64_t delta) {
    value_.store(value_.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// The hot-path cells of one direction of one route.
struct FlowCells {
  Cell* frames;
  Cell* messages;
  Cell* bytes;
  Cell* pauses;
  Cell* protocol_errors;
};

class WorkerStats {
 public:
  // Cells of both directions of `route` ([0] client_to_upstream, [1] upstream_to_client),
  // looked up once per route: a session start costs one hash lookup. Worker thread only.
  const std::array<FlowCells, 2>& routeCells(const std::string& route);

  // The cell for `metric` with `labels` (values in the order of MetricInfo::labels). The address
  // stays valid for the life of this object.
  Cell& cell(Metric metric, std::initializer_list<std::string_view> labels);

  using Key = std::pair<Metric, std::vector<std::string>>;
  // Calls `visit(key, value)` for every cell; used by the collector.
  template <typename Visit>
  void forEach(Visit&& visit) const {
    std::lock_guard lock(mutex_);
    for (const auto& [key, cell] : cells_) visit(key, cell->value());
  }

 private:
  // A key to look up without building a Key: finding an existing cell allocates nothing.
  struct KeyView {
    Metric metric;
    std::initializer_list<std::string_view> labels;
  };
  struct KeyLess {
    using is_transparent = void;
    bool operator()(const Key& a, const Key& b) const { return a < b; }
    bool operator()(const Key& a, const KeyView& b) const { return compare(a, b) < 0; }
    bool operator()(const KeyView& a, const Key& b) const { return compare(b, a) > 0; }
    static int compare(const Key& key, const KeyView& view);  // in Key's own order
  };
  mutable std::mutex mutex_;
  std::map<Key, std::unique_ptr<Cell>, KeyLess> cells_;
  std::unordered_map<std::string, std::array<FlowCells, 2>> route_cells_;  // worker thread only
};

}  // namespace wsgate::gateway
