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

// One certificate a TLS listener can present. The loader has read both files and checked that
// they parse and that the key belongs to the leaf.
struct TlsCertificate {
  // Path as resolved: relative paths are relative to the config file's directory.
  std::string cert_file;
  std::string key_file;
  std::vector<std::string> server_names;  // exact names or "*.suffix", lower-cased; may be empty
  std::string chain_pem;  // contents of cert_file: leaf first, then intermediates
  std::string key_pem;    // contents of key_file: a secret, never logged
};

struct ListenerTls {
  enum class Version { kTls12, kTls13 };
  // At least one; the first is the default (no SNI, or no server name matches). A server name
  // appears on at most one certificate of a listener.
  std::vector<TlsCertificate> certificates;
  Version min_version = Version::kTls12;
  std::string client_ca_file;  // empty: no client certificate asked for
  std::string client_ca_pem;   // one or more certificates
  bool require_client_cert = false;  // only with client_ca_file
  Duration handshake_timeout{std::chrono::seconds(10)};
};

// How the gateway connects to a cluster's endpoints over TLS.
struct ClusterTls {
  std::string ca_file, ca_pem;  // empty: the system's default trust store
  // SNI and the verified name; empty: the endpoint's host name (or IP literal). An IP literal is
  // verified against the certificate's IP addresses and is not sent as SNI (RFC 6066).
  std::string server_name;
  // Optional client certificate: both files or neither; key_pem is a secret, never logged.
  std::string cert_file, key_file, chain_pem, key_pem;
  bool verify = true;  // false is allowed but reported as a load warning
};

struct Route {
  std::string name;
  Match match;
  std::string cluster;
  std::vector<FilterSpec> filters;
  Duration idle_timeout{0};           // 0: none (default)
  Duration close_timeout{std::chrono::seconds(5)};  // closing handshake
  bool require_tls = false;  // only on a listener with tls
  // Empty: not forwarded. Else the verified client certificate's subject goes to the backend in
  // this header (only on a listener with tls.client_ca); a client-sent header of this name must
  // never reach the backend.
  std::string client_cert_header;
};

struct Listener {
  std::string name;
  Address address;
  std::vector<Route> routes;
  Duration request_timeout{std::chrono::seconds(10)};  // reading the request head
  uint32_t max_request_bytes = 16 * 1024;              // request head size → 431 above
  uint32_t max_request_headers = 64;                   // header count → 431 above
  uint32_t max_connections = 0;  // open on this listener, all workers together; 0: no cap
  std::optional<ListenerTls> tls;                      // none: plain TCP
};

struct Cluster {
  enum class Type { kStatic, kEcho };
  std::string name;
  Type type = Type::kStatic;
  std::vector<Address> endpoints;  // kStatic only; at least one
  Duration connect_timeout{std::chrono::seconds(5)};
  Duration response_timeout{std::chrono::seconds(10)};  // backend's answer to the upgrade
  std::optional<ClusterTls> tls;  // kStatic only; none: plain TCP
};

struct Admin {
  Address address{"127.0.0.1", 9901, ""};
};

struct Drain {
  // SIGTERM/SIGINT or POST /drain: live sessions get 1001 spread over two thirds of this, the
  // rest of it is for their closing handshakes; then what is left is closed. 0: stop at once.
  std::chrono::milliseconds timeout{30000};
};

struct Config {
  std::string source;  // file it was loaded from
  unsigned workers = 0;  // 0 in the file means "number of cores"; loader resolves it (>= 1)
  Admin admin;
  Drain drain;
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;

  const Cluster* findCluster(const std::string& name) const;
};

}  // namespace wsgate::config
