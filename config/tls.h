// The TLS settings of the config: the `tls` maps of listeners and clusters and the TLS keys of
// routes. The PEM files they name are read and checked with OpenSSL here, so that a config that
// loads holds certificates and CAs that parse and keys that belong to their certificates. Files
// are read on every load, so a reload picks up renewed certificates. No diagnostic ever holds a
// key's contents.
#pragma once

#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "config/config.h"
#include "config/diagnostics.h"

namespace wsgate::config {

// `base_dir` is where relative file paths start: the config file's directory (empty: the working
// directory). Each returns nullopt only when `node` is not a map; otherwise what could be read,
// with every problem in `diags`.
std::optional<ListenerTls> parseListenerTls(const YAML::Node& node, const std::string& path,
                                            const std::string& base_dir, Diagnostics& diags);
std::optional<ClusterTls> parseClusterTls(const YAML::Node& node, const std::string& path,
                                          const std::string& cluster_name,
                                          const std::string& base_dir, Diagnostics& diags);

// Reads `require_tls` and `client_cert_header` of route `node` into `out` (its name already
// read), checked against `listener_tls`: the listener's `tls` node, undefined when it has none.
void parseRouteTls(const YAML::Node& node, const std::string& path, const YAML::Node& listener_tls,
                   const std::string& listener_name, Route& out, Diagnostics& diags);

}  // namespace wsgate::config
