#include "filters/connection_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"
#include "filters/token_bucket.h"

namespace wsgate::filters {

namespace {

using Key = ConnectionLimitFilter::ClientKey;
// Work done on expired idle entries per handshake: bounds the time the lock is held; the rest
// is left to the next handshakes.
constexpr size_t kSweepStep = 64;
constexpr unsigned kBusyRetryAfter = 1;

// Salted so that nobody can choose addresses that collide in the table.
struct KeyHash {
  std::array<uint8_t, 17> salt{};
  size_t operator()(const Key& key) const {
    std::array<char, 17> mixed;
    for (size_t i = 0; i < key.size(); ++i) mixed[i] = static_cast<char>(key[i] ^ salt[i]);
    return std::hash<std::string_view>{}({mixed.data(), mixed.size()});
  }
};

KeyHash saltedHash() {
  KeyHash hash;
  std::random_device random;
  for (auto& byte : hash.salt) byte = static_cast<uint8_t>(random());
  return hash;
}

}  // namespace

struct ConnectionLimitFilter::State {
  struct Entry {
    uint64_t live = 0;
    // Tells this entry's queue items from those of an earlier entry of the same address.
    uint64_t generation = 0;
    bool queued = false;  // in `idle`: waiting for its bucket to be full
    std::optional<gateway::TokenBucket> bucket;
  };
  using Table = std::unordered_map<Key, Entry, KeyHash>;

  explicit State(const Limits& l) : limits(l), clients(16, saltedHash()) {}

  bool tracksClients() const { return limits.per_client_ip > 0 || limits.handshake_rate > 0; }

  // An entry with no live session: dropped once its bucket is full, since a fresh entry would
  // behave the same; until then queued to be looked at again when it would be.
  void retire(Table::iterator it, Clock::time_point now) {
    Entry& e = it->second;
    if (!e.bucket || e.bucket->tokens(now) >= limits.handshake_burst) {
      clients.erase(it);
      return;
    }
    if (e.queued) return;
    e.queued = true;
    idle.push_back({e.bucket->availableAt(limits.handshake_burst, now), it->first, e.generation});
  }

  // Entries are queued in the order their sessions ended, not in the order their buckets fill,
  // so one may wait behind another for at most burst/rate: a short delay, never a leak.
  void sweep(Clock::time_point now, size_t budget) {
    while (budget-- > 0 && !idle.empty() && idle.front().full <= now) {
      const Idle item = idle.front();
      idle.pop_front();
      auto it = clients.find(item.key);
      // Left behind by an entry erased while queued (its bucket was full at its last release).
      if (it == clients.end() || it->second.generation != item.generation) continue;
      it->second.queued = false;
      if (it->second.live == 0) retire(it, now);
    }
  }

  void release(const Key& key, bool client, Clock::time_point now) {
    std::lock_guard lock(mu);
    --route_live;
    if (!client) return;
    auto it = clients.find(key);
    if (it == clients.end()) return;  // cannot happen: an entry with live sessions stays
    if (--it->second.live == 0) retire(it, now);
  }

  const Limits limits;
  std::mutex mu;
  uint64_t route_live = 0;
  Table clients;
  struct Idle {
    Clock::time_point full;
    Key key;
    uint64_t generation;
  };
  // One element per queued entry of `clients`, and ones left by erased entries, which are due
  // already (so swept by the next handshakes, faster than handshakes can leave them): bounded.
  std::deque<Idle> idle;
  uint64_t generations = 0;
};

namespace {

class Slot final : public Admission {
 public:
  Slot(std::shared_ptr<ConnectionLimitFilter::State> state, const Key& key, bool client)
      : state_(std::move(state)), key_(key), client_(client) {}
  ~Slot() override {
    if (counted_) state_->release(key_, client_, Clock::now());
  }
  void setCounted() { counted_ = true; }

 private:
  // Shared, so that a slot may outlive the config that made it (a reload).
  std::shared_ptr<ConnectionLimitFilter::State> state_;
  Key key_;
  bool client_;
  bool counted_ = false;
};

unsigned secondsUntil(Clock::time_point when, Clock::time_point now) {
  const double seconds = std::chrono::duration<double>(when - now).count();
  return std::max(1u, static_cast<unsigned>(std::ceil(seconds)));
}

std::shared_ptr<const FilterFactory> buildConnectionLimit(const YAML::Node& node,
                                                          const std::string& path,
                                                          config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(
          node, path,
          {"per_route", "per_client_ip", "handshakes_per_ip", "ipv6_prefix", "max_tracked_clients"},
          diags)) {
    return nullptr;
  }
  constexpr int64_t kMaxCount = 100'000'000;
  ConnectionLimitFilter::Limits limits;
  if (YAML::Node n = node["per_route"]) {
    if (auto v = config::readInt(n, path + ".per_route", 1, kMaxCount, diags)) {
      limits.per_route = static_cast<uint64_t>(*v);
    }
  }
  if (YAML::Node n = node["per_client_ip"]) {
    if (auto v = config::readInt(n, path + ".per_client_ip", 1, kMaxCount, diags)) {
      limits.per_client_ip = static_cast<uint64_t>(*v);
    }
  }
  if (YAML::Node n = node["ipv6_prefix"]) {
    if (auto v = config::readInt(n, path + ".ipv6_prefix", 1, 128, diags)) {
      limits.ipv6_prefix = static_cast<unsigned>(*v);
    }
  }
  if (YAML::Node n = node["max_tracked_clients"]) {
    if (auto v = config::readInt(n, path + ".max_tracked_clients", 1, 10'000'000, diags)) {
      limits.max_tracked_clients = static_cast<size_t>(*v);
    }
  }
  if (YAML::Node rate = node["handshakes_per_ip"]) {
    const std::string rate_path = path + ".handshakes_per_ip";
    if (config::checkKeys(rate, rate_path, {"rate", "burst"}, diags)) {
      if (YAML::Node r = rate["rate"]) {
        if (auto v = config::readRate(r, rate_path + ".rate", diags)) limits.handshake_rate = *v;
      } else {
        diags.error(rate, rate_path, "missing required key \"rate\" (e.g. 20/s)");
      }
      // Without a burst, one second's worth: a client may reconnect its sessions at once.
      limits.handshake_burst = std::max(1.0, std::ceil(limits.handshake_rate));
      if (YAML::Node b = rate["burst"]) {
        if (auto v = config::readInt(b, rate_path + ".burst", 1, kMaxCount, diags)) {
          limits.handshake_burst = static_cast<double>(*v);
        }
      }
    }
  }
  if (!node["per_route"] && !node["per_client_ip"] && !node["handshakes_per_ip"]) {
    diags.error(node, path, "set per_route, per_client_ip, handshakes_per_ip or several");
  }
  // Every problem is reported (unknown keys included) before giving up on this filter.
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<ConnectionLimitFilter>(limits, path);
}

WSGATE_REGISTER_FILTER("connection_limit", buildConnectionLimit);

}  // namespace

ConnectionLimitFilter::ConnectionLimitFilter(Limits limits)
    : state_(std::make_shared<State>(limits)) {}

// Built once per filter per load, never per handshake. The table holds one entry per filter
// place of the configs alive (expired ones are dropped here).
ConnectionLimitFilter::ConnectionLimitFilter(Limits limits, const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<State>> alive;
  std::lock_guard lock(mutex);
  std::erase_if(alive, [](const auto& entry) { return entry.second.expired(); });
  auto& slot = alive[path];
  if (auto earlier = slot.lock(); earlier && earlier->limits == limits) {
    state_ = std::move(earlier);
    return;
  }
  state_ = std::make_shared<State>(limits);
  slot = state_;
}

ConnectionLimitFilter::ClientKey ConnectionLimitFilter::keyOf(std::string_view address,
                                                              unsigned ipv6_prefix) {
  Key key{};
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (address.size() >= text.size()) return key;  // not an address: all such share one key
  std::memcpy(text.data(), address.data(), address.size());
  if (::inet_pton(AF_INET, text.data(), key.data() + 1) == 1) {
    key[0] = 4;
    return key;
  }
  std::array<uint8_t, 16> v6{};
  if (::inet_pton(AF_INET6, text.data(), v6.data()) != 1) return key;
  static constexpr std::array<uint8_t, 12> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped.begin(), kMapped.end(), v6.begin())) {
    key[0] = 4;
    std::copy(v6.begin() + 12, v6.end(), key.begin() + 1);
    return key;
  }
  key[0] = 6;
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned bits = ipv6_prefix > i * 8 ? std::min(8u, ipv6_prefix - i * 8) : 0;
    const auto mask = static_cast<uint8_t>(bits == 0 ? 0 : 0xff << (8 - bits));
    key[1 + i] = v6[i] & mask;
  }
  return key;
}

HandshakeVerdict ConnectionLimitFilter::admit(const HandshakeRequest& request,
                                              Admissions& admissions) const {
  return admitAt(request.clientAddress(), admissions, Clock::now());
}

HandshakeVerdict ConnectionLimitFilter::admitAt(std::string_view client_address,
                                                Admissions& admissions,
                                                Clock::time_point now) const {
  State& s = *state_;
  const Limits& limits = s.limits;
  const bool client = s.tracksClients();
  const Key key = client ? keyOf(client_address, limits.ipv6_prefix) : Key{};
  // Made before anything is counted, and handed over after: nothing that may throw comes
  // between counting a slot and its owner being able to give it back.
  auto slot = std::make_unique<Slot>(state_, key, client);
  {
    std::lock_guard lock(s.mu);
    s.sweep(now, kSweepStep);
    if (client) {
      auto it = s.clients.find(key);
      if (it == s.clients.end()) {
        if (s.clients.size() >= limits.max_tracked_clients) {
          return HandshakeRejection{503, "too many client addresses", "client_table_full",
                                    kBusyRetryAfter};
        }
        it = s.clients.emplace(key, State::Entry{}).first;
        it->second.generation = ++s.generations;
        if (limits.handshake_rate > 0) {
          it->second.bucket.emplace(limits.handshake_rate, limits.handshake_burst, now);
        }
      }
      State::Entry* entry = &it->second;
      std::optional<HandshakeRejection> refusal;
      if (entry->bucket && !entry->bucket->take(1, now)) {
        refusal = HandshakeRejection{429, "too many handshakes from this address", "handshake_rate",
                                     secondsUntil(entry->bucket->availableAt(1, now), now)};
      } else if (limits.per_client_ip > 0 && entry->live >= limits.per_client_ip) {
        refusal = HandshakeRejection{429, "too many connections from this address", "per_client_ip",
                                     kBusyRetryAfter};
      } else if (limits.per_route > 0 && s.route_live >= limits.per_route) {
        refusal = HandshakeRejection{503, "too many connections on this route", "per_route",
                                     kBusyRetryAfter};
      }
      if (refusal) {
        if (entry->live == 0) s.retire(it, now);
        return refusal;
      }
      ++entry->live;
    } else if (limits.per_route > 0 && s.route_live >= limits.per_route) {
      return HandshakeRejection{503, "too many connections on this route", "per_route",
                                kBusyRetryAfter};
    }
    ++s.route_live;
    slot->setCounted();
  }
  // Outside the lock: should this throw, the slot's release takes the lock.
  admissions.push_back(std::move(slot));
  return std::nullopt;
}

size_t ConnectionLimitFilter::trackedClients() const {
  std::lock_guard lock(state_->mu);
  return state_->clients.size();
}

uint64_t ConnectionLimitFilter::liveSessions() const {
  std::lock_guard lock(state_->mu);
  return state_->route_live;
}

void ConnectionLimitFilter::sweep(Clock::time_point now) const {
  std::lock_guard lock(state_->mu);
  state_->sweep(now, state_->idle.size());
}

}  // namespace wsgate::filters
