// `connection_limit`: caps live sessions per route (503) and per client address (429), and new
// handshakes per second per client address (a token bucket each, 429); every refusal carries
// Retry-After. A client address is an IPv4 /32 or an IPv6 /`ipv6_prefix` (64 by
// default; an IPv4-mapped IPv6 address counts as its IPv4 address).
//
// The counts are shared by every worker: one mutex, taken once when a handshake is admitted and
// once when its slot is given back, never per frame. The per-address table is bounded: an
// address leaves it once it has no live session and its bucket is full again (checked when the
// last session ends, then on later handshakes), and while it holds `max_tracked_clients`
// addresses a new address is refused with 503 instead of growing it. A reload that leaves a
// filter's place (its YAML path) and limits as they were carries its counts over.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "filters/filter.h"

namespace wsgate::filters {

class ConnectionLimitFilter final : public FilterFactory, public HandshakeFilter {
 public:
  struct Limits {
    uint64_t per_route = 0;      // 0: no cap
    uint64_t per_client_ip = 0;  // 0: no cap
    double handshake_rate = 0;   // per second and address; 0: no rate limit
    double handshake_burst = 0;
    unsigned ipv6_prefix = 64;
    size_t max_tracked_clients = 100000;
    bool operator==(const Limits&) const = default;
  };
  // A family byte (4 or 6) and the masked address.
  using ClientKey = std::array<uint8_t, 17>;

  explicit ConnectionLimitFilter(Limits limits);
  // The same, sharing its counts with the live filter built before at the same YAML `path` with
  // the same limits, if any: a reload keeps counting the sessions that started before it.
  ConnectionLimitFilter(Limits limits, const std::string& path);

  std::string_view name() const override { return "connection_limit"; }
  const HandshakeFilter* handshakeFilter() const override { return this; }
  HandshakeVerdict onHandshake(const HandshakeRequest&) const override { return std::nullopt; }
  HandshakeVerdict admit(const HandshakeRequest& request, Admissions& admissions) const override;

  // admit() with the time given, for tests.
  HandshakeVerdict admitAt(std::string_view client_address, Admissions& admissions,
                           Clock::time_point now) const;
  // What the table holds now (tests and the boundedness guarantee).
  size_t trackedClients() const;
  uint64_t liveSessions() const;
  // Drops addresses that are idle with a full bucket by `now` (also done on each handshake).
  void sweep(Clock::time_point now) const;

  static ClientKey keyOf(std::string_view address, unsigned ipv6_prefix);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace wsgate::filters
