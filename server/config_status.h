// What the admin listener tells about the configuration: the active one (as JSON, secrets
// redacted), when it was loaded, its hash, and how reloads went. Written by the server on a
// reload (any thread), read by the admin thread; guarded by one mutex, touched per reload and
// per scrape only.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace wsgate::gateway {

class ConfigStatus final : public prometheus::Collectable {
 public:
  // A config now active, from `text` (the file as read, before ${VAR} expansion).
  void loaded(const std::string& path, const std::string& text, bool is_reload);
  void reloadFailed(const std::string& errors);

  // GET /config: {"source", "hash", "loaded_at", "last_reload_error", "config": {...}}.
  std::string json() const;
  std::string hash() const;
  // wsgate_config_reloads_total{result}, wsgate_config_info{hash},
  // wsgate_config_last_reload_success_timestamp_seconds.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mutex_;
  std::string path_;
  std::string hash_;
  std::string config_json_;
  std::chrono::system_clock::time_point loaded_at_{};
  std::string last_error_;
  uint64_t successes_ = 0;
  uint64_t failures_ = 0;
};

// SHA-256 of `text`, the first 16 hex digits.
std::string configHash(const std::string& text);
// The YAML `text` (variables expanded) as JSON, every value under a key that names a secret
// (passphrase, password, secret, token) replaced by "<redacted>"; scalars are strings.
std::string configAsJson(const std::string& text);

}  // namespace wsgate::gateway
