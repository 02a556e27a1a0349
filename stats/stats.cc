#include "stats/stats.h"

#include <algorithm>
#include <array>

namespace wsgate::gateway {

namespace {

// Sorted by name, as they appear in /metrics.
const std::array<MetricInfo, static_cast<size_t>(Metric::kCount)> kMetrics = {{
    {"wsgate_accept_failures_total",
     "Failed accepts of client connections (mostly: out of file descriptors); each pauses the "
     "listener for 100ms.",
     false, {"listener"}},
    {"wsgate_backpressure_pauses_total",
     "Times a direction stopped reading because its destination could not take more bytes.",
     false, {"route", "direction"}},
    {"wsgate_bytes_total", "WebSocket frame bytes relayed (headers included), live.", false,
     {"route", "direction"}},
    {"wsgate_close_codes_total", "Close frames by the side that sent them and their code.", false,
     {"route", "side", "code"}},
    {"wsgate_connections_active", "Client connections currently open.", true, {"listener"}},
    {"wsgate_connections_total", "Client connections ended, by outcome.", false,
     {"listener", "outcome"}},
    {"wsgate_drain_closed_sessions_total",
     "Sessions a drain asked to go away (1001 to both sides).", false, {}},
    {"wsgate_filter_rejections_total",
     "Handshakes refused or sessions closed by a filter, by the filter's reason.", false,
     {"route", "filter", "reason"}},
    {"wsgate_frames_total", "WebSocket frames relayed, live.", false, {"route", "direction"}},
    {"wsgate_handshake_rejections_total", "Upgrade requests answered with an HTTP error.", false,
     {"listener", "reason"}},
    {"wsgate_keepalive_pings_total", "Keepalive pings the gateway sent, by the side pinged.",
     false, {"route", "side"}},
    {"wsgate_keepalive_timeouts_total",
     "Legs closed because they answered no keepalive ping in time, by side.", false,
     {"route", "side"}},
    {"wsgate_messages_total", "WebSocket data messages relayed (counted at their last frame).",
     false, {"route", "direction"}},
    {"wsgate_protocol_errors_total", "RFC 6455 violations closed with 1002, by offending direction.",
     false, {"route", "direction"}},
    {"wsgate_relay_buffer_bytes",
     "Bytes of read buffers lent to busy sessions (idle sessions hold none).", true, {}},
    {"wsgate_session_failures_total",
     "Sessions the gateway closed with 1011 because handling them failed (an exception).", false,
     {"route"}},
    {"wsgate_throttled_seconds_total",
     "Time a direction's source was not read because a rate limit throttled it.", false,
     {"route", "direction"}, 1e-6},
    {"wsgate_tls_handshake_failures_total",
     "TLS handshakes with clients that failed, by reason (timeout, not_tls, protocol_version, "
     "no_shared_cipher, no_client_cert, bad_client_cert, closed, other).",
     false, {"listener", "reason"}},
    {"wsgate_tls_handshakes_total", "TLS handshakes with clients completed, by TLS version.",
     false, {"listener", "version"}},
    {"wsgate_upstream_connect_failures_total", "Failed connection attempts to cluster endpoints.",
     false, {"cluster"}},
    {"wsgate_upstream_tls_failures_total",
     "TLS handshakes with backends that failed, by reason (verify_failed, timeout, closed, "
     "handshake_failed).",
     false, {"cluster", "reason"}},
    {"wsgate_worker_failures_total",
     "Failures that escaped every handler and reached a worker's loop, which went on.", false,
     {}},
}};

}  // namespace

const MetricInfo& metricInfo(Metric metric) { return kMetrics[static_cast<size_t>(metric)]; }

int WorkerStats::KeyLess::compare(const Key& key, const KeyView& view) {
  if (key.first != view.metric) return key.first < view.metric ? -1 : 1;
  auto a = key.second.begin();
  auto b = view.labels.begin();
  for (; a != key.second.end() && b != view.labels.end(); ++a, ++b) {
    if (const int c = std::string_view(*a).compare(*b); c != 0) return c;
  }
  if (a == key.second.end()) return b == view.labels.end() ? 0 : -1;
  return 1;
}

Cell& WorkerStats::cell(Metric metric, std::initializer_list<std::string_view> labels) {
  const KeyView view{metric, labels};
  // Only this worker's thread inserts, so its own lookups need no lock; the collector's reads
  // are shut out only while a new cell goes in.
  if (auto it = cells_.find(view); it != cells_.end()) return *it->second;
  Key key{metric, {}};
  key.second.reserve(labels.size());
  for (std::string_view label : labels) key.second.emplace_back(label);
  std::lock_guard lock(mutex_);
  return *cells_.emplace(std::move(key), std::make_unique<Cell>()).first->second;
}

const std::array<FlowCells, 2>& WorkerStats::routeCells(const std::string& route) {
  auto it = route_cells_.find(route);
  if (it != route_cells_.end()) return it->second;
  std::array<FlowCells, 2> cells;
  const std::array<std::string_view, 2> directions = {"client_to_upstream", "upstream_to_client"};
  for (size_t d = 0; d < 2; ++d) {
    cells[d] = {&cell(Metric::kFrames, {route, directions[d]}),
                &cell(Metric::kMessages, {route, directions[d]}),
                &cell(Metric::kBytes, {route, directions[d]}),
                &cell(Metric::kBackpressurePauses, {route, directions[d]}),
                &cell(Metric::kProtocolErrors, {route, directions[d]})};
  }
  return route_cells_.emplace(route, cells).first->second;
}

}  // namespace wsgate::gateway
