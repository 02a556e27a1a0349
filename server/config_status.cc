#include "server/config_status.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include "config/env_expand.h"

namespace wsgate::gateway {

namespace {

std::string jsonString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

bool secretKey(std::string key) {
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* word : {"passphrase", "password", "secret", "token"}) {
    if (key.find(word) != std::string::npos) return true;
  }
  return false;
}

void toJson(const YAML::Node& node, bool redact, std::string& out) {
  if (redact && !node.IsMap() && !node.IsSequence()) {
    out += "\"<redacted>\"";
  } else if (node.IsMap()) {
    out += "{";
    bool first = true;
    for (const auto& item : node) {
      if (!first) out += ",";
      first = false;
      const std::string key = item.first.IsScalar() ? item.first.Scalar() : "?";
      out += jsonString(key) + ":";
      toJson(item.second, redact || secretKey(key), out);
    }
    out += "}";
  } else if (node.IsSequence()) {
    out += "[";
    for (size_t i = 0; i < node.size(); ++i) {
      if (i > 0) out += ",";
      toJson(node[i], redact, out);
    }
    out += "]";
  } else if (node.IsScalar()) {
    out += jsonString(node.Scalar());
  } else {
    out += "null";
  }
}

std::string isoTime(std::chrono::system_clock::time_point at) {
  const std::time_t t = std::chrono::system_clock::to_time_t(at);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace

std::string configHash(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string hex;
  char byte[3];
  for (int i = 0; i < 8; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

std::string configAsJson(const std::string& text) {
  config::Diagnostics ignored("config");
  const std::string expanded =
      config::expandVariables(text, config::environmentVariable, ignored);
  std::string out;
  try {
    toJson(YAML::Load(expanded), false, out);
  } catch (const YAML::Exception&) {
    out = "null";
  }
  return out;
}

void ConfigStatus::loaded(const std::string& path, const std::string& text, bool is_reload) {
  std::string json = configAsJson(text);
  std::string hash = configHash(text);
  std::lock_guard lock(mutex_);
  path_ = path;
  hash_ = std::move(hash);
  config_json_ = std::move(json);
  loaded_at_ = std::chrono::system_clock::now();
  last_error_.clear();
  if (is_reload) ++successes_;
}

void ConfigStatus::reloadFailed(const std::string& errors) {
  std::lock_guard lock(mutex_);
  last_error_ = errors;
  ++failures_;
}

std::string ConfigStatus::hash() const {
  std::lock_guard lock(mutex_);
  return hash_;
}

std::string ConfigStatus::json() const {
  std::lock_guard lock(mutex_);
  return "{\"source\":" + jsonString(path_) + ",\"hash\":" + jsonString(hash_) +
         ",\"loaded_at\":" + jsonString(isoTime(loaded_at_)) + ",\"last_reload_error\":" +
         (last_error_.empty() ? std::string("null") : jsonString(last_error_)) +
         ",\"config\":" + config_json_ + "}\n";
}

std::vector<prometheus::MetricFamily> ConfigStatus::Collect() const {
  std::lock_guard lock(mutex_);
  std::vector<prometheus::MetricFamily> families(3);
  families[0].name = "wsgate_config_reloads_total";
  families[0].help = "Configuration reloads (SIGHUP, POST /reload), by result.";
  families[0].type = prometheus::MetricType::Counter;
  for (const auto& [result, n] : {std::pair{"success", successes_}, {"failure", failures_}}) {
    prometheus::ClientMetric metric;
    metric.label.push_back({"result", result});
    metric.counter.value = static_cast<double>(n);
    families[0].metric.push_back(std::move(metric));
  }
  families[1].name = "wsgate_config_info";
  families[1].help = "The active configuration, by the hash of its file (the value is 1).";
  families[1].type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric info;
  info.label.push_back({"hash", hash_});
  info.gauge.value = 1;
  families[1].metric.push_back(std::move(info));
  families[2].name = "wsgate_config_last_reload_success_timestamp_seconds";
  families[2].help = "When the active configuration was loaded (Unix time).";
  families[2].type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric when;
  when.gauge.value = std::chrono::duration<double>(loaded_at_.time_since_epoch()).count();
  families[2].metric.push_back(std::move(when));
  return families;
}

}  // namespace wsgate::gateway
