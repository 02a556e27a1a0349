// The typed, validated configuration. A `Config` is immutable once loaded and is shared as
// `std::shared_ptr<const Config>`: a reload publishes a new snapshot while live sessions keep
// the one they started with.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/filter_catalog.h"

namespace wsgate::config {

using Duration = std::chrono::milliseconds;

// A literal IP address and port: "127.0.0.1:8080", "[::1]:8080".
struct Address {
  std::string ip;  // without brackets
  uint16_t port = 0;
  std::string host;  // the name it was resolved from (cluster endpoints only), else empty
  // As written back: "127.0.0.1:8080", "[::1]:8080", "backend:9000 (10.0.0.5)"
  std::string text() const;
};

struct Match {
  // Empty: any host. "*.example.com": any subdomain of example.com. Else exact, case-insensitive,
  // compared without the port.
  std::string host;
  std::optional<std::string> path_exact;
  std::optional<std::string> path_prefix;  // neither set: any path
};

struct FilterSpec {
  std::string name;  // registry name, e.g. "origin"
  std::string path;  // YAML key path, for logs
  std::shared_ptr<const BuiltFilter> built;
};

struct Route {
  std::string name;
  Match match;
  std::string cluster;
  std::vector<FilterSpec> filters;
  Duration idle_timeout{0};           // 0: none (default)
  Duration close_timeout{std::chrono::seconds(5)};  // closing handshake
};

struct Listener {
  std::string name;
  Address address;
  std::vector<Route> routes;
  Duration request_timeout{std::chrono::seconds(10)};  // reading the request head
  uint32_t max_request_bytes = 16 * 1024;              // request head size → 431 above
  uint32_t max_request_headers = 64;                   // header count → 431 above
};

struct Cluster {
  enum class Type { kStatic, kEcho };
  std::string name;
  Type type = Type::kStatic;
  std::vector<Address> endpoints;  // kStatic only; at least one
  Duration connect_timeout{std::chrono::seconds(5)};
  Duration response_timeout{std::chrono::seconds(10)};  // backend's answer to the upgrade
};

struct Admin {
  Address address{"127.0.0.1", 9901, ""};
};

struct Config {
  std::string source;  // file it was loaded from
  unsigned workers = 0;  // 0 in the file means "number of cores"; loader resolves it (>= 1)
  Admin admin;
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;

  const Cluster* findCluster(const std::string& name) const;
};

}  // namespace wsgate::config
