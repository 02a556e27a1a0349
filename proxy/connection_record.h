// Counts one client connection in `wsgate_connections_active` while it lives and in
// `wsgate_connections_total{outcome}` when it ends. Moves from the handshake into the session.
#pragma once

#include <string>
#include <string_view>

#include "stats/stats.h"

namespace wsgate::gateway {

namespace outcome {
inline constexpr std::string_view kRelayed = "relayed";                // session ran and ended
inline constexpr std::string_view kRejected = "rejected";              // gateway answered an error
inline constexpr std::string_view kUpstreamError = "upstream_error";   // 502/504
inline constexpr std::string_view kUpstreamDeclined = "upstream_declined";  // backend said no
inline constexpr std::string_view kAborted = "aborted";  // client left before an answer
inline constexpr std::string_view kFailed = "failed";    // the gateway failed handling it
inline constexpr std::string_view kTlsFailed = "tls_failed";  // the TLS handshake failed
}  // namespace outcome

class ConnectionRecord {
 public:
  ConnectionRecord(WorkerStats& stats, std::string_view listener)
      : stats_(&stats), listener_(listener),
        active_(&stats.cell(Metric::kConnectionsActive, {listener})) {
    active_->add(1);
  }
  ConnectionRecord(ConnectionRecord&& other) noexcept
      : stats_(other.stats_), listener_(std::move(other.listener_)), active_(other.active_),
        outcome_(other.outcome_) {
    other.active_ = nullptr;
  }
  ConnectionRecord& operator=(ConnectionRecord&&) = delete;
  ~ConnectionRecord() {
    if (!active_) return;
    active_->add(-1);
    stats_->cell(Metric::kConnectionsTotal, {listener_, outcome_}).add(1);
  }

  void setOutcome(std::string_view outcome) { outcome_ = outcome; }
  const std::string& listener() const { return listener_; }

 private:
  WorkerStats* stats_;
  std::string listener_;
  Cell* active_;
  std::string_view outcome_ = outcome::kAborted;
};

}  // namespace wsgate::gateway
