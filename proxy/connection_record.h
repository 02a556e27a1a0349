// Counts one client connection in `wsgate_connections_active` while it lives and in
// `wsgate_connections_total{outcome}` when it ends, and holds its place in the listener's
// max_connections. Moves from the handshake into the session.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

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

// A place in a listener's count of open connections, shared by every worker (one atomic per
// listener, touched once at accept and once at close); given back when destroyed.
class ListenerSlot {
 public:
  ListenerSlot() = default;
  // A place in `open` when fewer than `cap` are taken; else an empty slot.
  static ListenerSlot take(std::atomic<uint32_t>& open, uint32_t cap) {
    if (open.fetch_add(1, std::memory_order_relaxed) < cap) return ListenerSlot(&open);
    open.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  ListenerSlot(ListenerSlot&& other) noexcept : open_(std::exchange(other.open_, nullptr)) {}
  ListenerSlot& operator=(ListenerSlot&& other) noexcept {
    std::swap(open_, other.open_);
    return *this;
  }
  ~ListenerSlot() {
    if (open_) open_->fetch_sub(1, std::memory_order_relaxed);
  }
  explicit operator bool() const { return open_ != nullptr; }

 private:
  explicit ListenerSlot(std::atomic<uint32_t>* open) : open_(open) {}
  std::atomic<uint32_t>* open_ = nullptr;
};

class ConnectionRecord {
 public:
  ConnectionRecord(WorkerStats& stats, std::string_view listener, ListenerSlot slot = {})
      : stats_(&stats), listener_(listener),
        active_(&stats.cell(Metric::kConnectionsActive, {listener})), slot_(std::move(slot)) {
    active_->add(1);
  }
  ConnectionRecord(ConnectionRecord&& other) noexcept
      : stats_(other.stats_), listener_(std::move(other.listener_)), active_(other.active_),
        slot_(std::move(other.slot_)), outcome_(other.outcome_) {
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
  ListenerSlot slot_;
  std::string_view outcome_ = outcome::kAborted;
};

}  // namespace wsgate::gateway
