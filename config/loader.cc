#include "config/loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <boost/asio/ip/address.hpp>
#include <yaml-cpp/yaml.h>

#include "config/env_expand.h"
#include "config/name_resolver.h"
#include "config/tls.h"
#include "config/yaml_util.h"

namespace wsgate::config {

namespace {

std::string indexed(const std::string& path, const char* key, size_t i) {
  return path + (path.empty() ? "" : ".") + key + "[" + std::to_string(i) + "]";
}

std::string child(const std::string& path, const char* key) {
  return path.empty() ? key : path + "." + key;
}

// Parses "1.2.3.4:80" or "[::1]:80" with port in [min_port, 65535]; with `names`, also
// "host.name:80", returned with `host` set and no `ip` yet.
std::optional<Address> parseAddress(const std::string& text, uint16_t min_port,
                                    std::string& why, bool names = false) {
  std::string host;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      why = "IPv6 addresses are written [addr]:port";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      why = "expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(host, ec);
  const bool name = names && ec && text.front() != '[' && isHostName(host);
  if (!name && (ec || (text.front() == '[') != ip.is_v6())) {
    why = names ? "\"" + host + "\" is neither an IP address nor a host name (e.g. 10.0.0.5, " +
                      "[fd00::5] or backend.internal)"
                : "\"" + host + "\" is not an IP address (use a literal IP such as 127.0.0.1 or [::1])";
    return std::nullopt;
  }
  unsigned long port = 0;
  bool digits = !port_text.empty() && port_text.size() <= 5 &&
                std::all_of(port_text.begin(), port_text.end(), ::isdigit);
  if (digits) port = std::stoul(port_text);
  if (!digits || port < min_port || port > 65535) {
    why = "port must be a number from " + std::to_string(min_port) + " to 65535";
    return std::nullopt;
  }
  if (name) return Address{"", static_cast<uint16_t>(port), host};
  return Address{ip.to_string(), static_cast<uint16_t>(port), ""};
}

class Loader {
 public:
  // `base_dir`: where relative file paths (TLS certificates and keys) start.
  Loader(const FilterCatalog& catalog, const NameResolver& resolve, std::string base_dir,
         Diagnostics& diags)
      : catalog_(catalog), resolve_(resolve), base_dir_(std::move(base_dir)), diags_(diags) {}

  std::shared_ptr<Config> load(const YAML::Node& root);

 private:
  // Reads `node[key]` if present (returns an undefined node if not).
  YAML::Node optional(const YAML::Node& map, const char* key) { return map[key]; }
  YAML::Node required(const YAML::Node& map, const char* key, const std::string& path) {
    YAML::Node value = map[key];
    if (!value) diags_.error(map, path, std::string("missing required key \"") + key + "\"");
    return value;
  }
  std::optional<Address> address(const YAML::Node& node, const std::string& path,
                                 uint16_t min_port, bool names = false) {
    auto text = readString(node, path, diags_);
    if (!text) return std::nullopt;
    std::string why;
    auto parsed = parseAddress(*text, min_port, why, names);
    if (parsed && !parsed->host.empty()) named_.push_back({node, path, parsed->host});
    if (!parsed) diags_.error(node, path, "invalid address \"" + *text + "\": " + why);
    return parsed;
  }
  void positiveDuration(const YAML::Node& map, const char* key, const std::string& path,
                        Duration& out, bool allow_zero = false) {
    YAML::Node node = map[key];
    if (!node) return;
    auto value = readDuration(node, child(path, key), diags_);
    if (!value) return;
    if (!allow_zero && value->count() <= 0) {
      diags_.error(node, child(path, key), "must be greater than 0");
      return;
    }
    out = *value;
  }

  void cluster(const YAML::Node& node, const std::string& path, Cluster& out);
  void listener(const YAML::Node& node, const std::string& path, Listener& out);
  void route(const YAML::Node& node, const std::string& path, const YAML::Node& listener_tls,
             const std::string& listener_name, Route& out);
  void match(const YAML::Node& node, const std::string& path, Match& out);
  void filters(const YAML::Node& node, const std::string& path, std::vector<FilterSpec>& out);
  void resolveNames(Config& config);

  const FilterCatalog& catalog_;
  const NameResolver& resolve_;
  const std::string base_dir_;
  Diagnostics& diags_;
  struct Named {
    YAML::Node node;
    std::string path;
    std::string host;
  };
  std::vector<Named> named_;  // endpoints written with a host name, resolved once all are read
  // Route cluster references, checked once every cluster is known.
  std::vector<std::pair<YAML::Node, std::string>> cluster_refs_;
};

std::shared_ptr<Config> Loader::load(const YAML::Node& root) {
  auto config = std::make_shared<Config>();
  if (!root || root.IsNull()) {
    diags_.error(1, 1, "(root)", "the file is empty");
    return nullptr;
  }
  if (!checkKeys(root, "", {"workers", "admin", "drain", "listeners", "clusters"}, diags_)) {
    return nullptr;
  }

  if (YAML::Node workers = root["workers"]) {
    if (auto n = readInt(workers, "workers", 1, 256, diags_)) {
      config->workers = static_cast<unsigned>(*n);
    }
  }
  if (config->workers == 0) config->workers = std::max(1u, std::thread::hardware_concurrency());

  if (YAML::Node admin = root["admin"]) {
    if (checkKeys(admin, "admin", {"address"}, diags_)) {
      if (YAML::Node addr = admin["address"]) {
        if (auto parsed = address(addr, "admin.address", 0)) config->admin.address = *parsed;
      }
    }
  }

  if (YAML::Node drain = root["drain"]) {
    if (checkKeys(drain, "drain", {"timeout"}, diags_)) {
      if (YAML::Node timeout = drain["timeout"]) {
        if (auto d = readDuration(timeout, "drain.timeout", diags_)) {
          if (*d > std::chrono::hours(1)) {
            diags_.error(timeout, "drain.timeout", "must be at most 1h");
          } else {
            config->drain.timeout = *d;
          }
        }
      }
    }
  }

  YAML::Node clusters = required(root, "clusters", "(root)");
  if (clusters) {
    if (!clusters.IsSequence() || clusters.size() == 0) {
      diags_.error(clusters, "clusters", "must be a non-empty list");
    } else {
      std::map<std::string, std::string> names;
      for (size_t i = 0; i < clusters.size(); ++i) {
        const std::string path = indexed("", "clusters", i);
        Cluster c;
        cluster(clusters[i], path, c);
        if (c.name.empty()) continue;
        auto [it, added] = names.emplace(c.name, path);
        if (!added) {
          diags_.error(clusters[i]["name"], path + ".name",
                       "duplicate cluster name \"" + c.name + "\" (also " + it->second + ")");
        }
        config->clusters.push_back(std::move(c));
      }
    }
  }

  YAML::Node listeners = required(root, "listeners", "(root)");
  if (listeners) {
    if (!listeners.IsSequence() || listeners.size() == 0) {
      diags_.error(listeners, "listeners", "must be a non-empty list");
    } else {
      std::map<std::string, std::string> names;
      std::map<std::string, std::string> addresses;
      for (size_t i = 0; i < listeners.size(); ++i) {
        const std::string path = indexed("", "listeners", i);
        Listener l;
        listener(listeners[i], path, l);
        if (!l.name.empty()) {
          auto [it, added] = names.emplace(l.name, path);
          if (!added) {
            diags_.error(listeners[i]["name"], path + ".name",
                         "duplicate listener name \"" + l.name + "\" (also " + it->second + ")");
          }
        }
        if (l.address.port != 0) {
          auto [it, added] = addresses.emplace(l.address.text(), path);
          if (!added) {
            diags_.error(listeners[i]["address"], path + ".address",
                         "address " + l.address.text() + " already used by " + it->second);
          }
        }
        config->listeners.push_back(std::move(l));
      }
    }
  }

  resolveNames(*config);
  for (const auto& [node, path] : cluster_refs_) {
    const std::string name = node.Scalar();
    if (config->findCluster(name)) continue;
    std::string known;
    for (const auto& c : config->clusters) known += (known.empty() ? "" : ", ") + c.name;
    diags_.error(node, path, "unknown cluster \"" + name + "\" (known: " + known + ")");
  }
  return config;
}

void Loader::cluster(const YAML::Node& node, const std::string& path, Cluster& out) {
  if (!checkKeys(node, path,
                 {"name", "type", "endpoints", "connect_timeout", "response_timeout", "tls"},
                 diags_)) {
    return;
  }
  if (YAML::Node name = required(node, "name", path)) {
    if (auto text = readString(name, path + ".name", diags_)) out.name = *text;
  }
  if (YAML::Node type = node["type"]) {
    const std::string text = type.IsScalar() ? type.Scalar() : "";
    if (text == "echo") {
      out.type = Cluster::Type::kEcho;
    } else if (text == "static") {
      out.type = Cluster::Type::kStatic;
    } else {
      diags_.error(type, path + ".type", "unknown cluster type \"" + text + "\" (static, echo)");
      return;  // which keys are required depends on the type
    }
  }
  YAML::Node endpoints = node["endpoints"];
  if (out.type == Cluster::Type::kEcho) {
    if (endpoints) {
      diags_.error(endpoints, path + ".endpoints", "an echo cluster has no endpoints");
    }
  } else if (!endpoints) {
    diags_.error(node, path, "missing required key \"endpoints\"");
  } else if (!endpoints.IsSequence() || endpoints.size() == 0) {
    diags_.error(endpoints, path + ".endpoints", "must be a non-empty list of IP:port");
  } else {
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (auto a = address(endpoints[i], indexed(path, "endpoints", i), 1, true)) {
        out.endpoints.push_back(*a);
      }
    }
  }
  positiveDuration(node, "connect_timeout", path, out.connect_timeout);
  positiveDuration(node, "response_timeout", path, out.response_timeout);
  if (YAML::Node tls = node["tls"]) {
    if (out.type == Cluster::Type::kEcho) {
      diags_.error(tls, path + ".tls", "an echo cluster takes no tls: it runs inside the gateway");
    } else {
      out.tls = parseClusterTls(tls, path + ".tls", out.name, base_dir_, diags_);
    }
  }
}

void Loader::resolveNames(Config& config) {
  if (named_.empty()) return;
  std::vector<std::string> hosts;
  for (const auto& n : named_) {
    if (std::find(hosts.begin(), hosts.end(), n.host) == hosts.end()) hosts.push_back(n.host);
  }
  std::vector<Resolved> answers =
      resolve_ ? resolve_(hosts) : std::vector<Resolved>(hosts.size(), {{}, "no resolver"});
  answers.resize(hosts.size(), {{}, "no answer"});
  std::map<std::string, const Resolved*> by_host;
  for (size_t i = 0; i < hosts.size(); ++i) by_host[hosts[i]] = &answers[i];
  for (const auto& n : named_) {
    const Resolved& r = *by_host[n.host];
    if (r.ips.empty()) {
      diags_.error(n.node, n.path, "cannot resolve \"" + n.host + "\": " + r.error);
    }
  }
  // Each name becomes one endpoint per address, in the written order.
  for (auto& cluster : config.clusters) {
    std::vector<Address> endpoints;
    for (auto& endpoint : cluster.endpoints) {
      if (endpoint.host.empty()) {
        endpoints.push_back(std::move(endpoint));
        continue;
      }
      for (const auto& ip : by_host[endpoint.host]->ips) {
        endpoints.push_back(Address{ip, endpoint.port, endpoint.host});
      }
    }
    cluster.endpoints = std::move(endpoints);
  }
}

void Loader::listener(const YAML::Node& node, const std::string& path, Listener& out) {
  if (!checkKeys(node, path,
                 {"name", "address", "routes", "request_timeout", "max_request_bytes",
                  "max_request_headers", "max_connections", "tls"},
                 diags_)) {
    return;
  }
  if (YAML::Node name = required(node, "name", path)) {
    if (auto text = readString(name, path + ".name", diags_)) out.name = *text;
  }
  if (YAML::Node addr = required(node, "address", path)) {
    if (auto a = address(addr, path + ".address", 0)) out.address = *a;
  }
  positiveDuration(node, "request_timeout", path, out.request_timeout);
  if (YAML::Node bytes = node["max_request_bytes"]) {
    if (auto size = readSize(bytes, path + ".max_request_bytes", diags_)) {
      if (*size < 1024 || *size > 1024 * 1024) {
        diags_.error(bytes, path + ".max_request_bytes", "must be from 1KiB to 1MiB");
      } else {
        out.max_request_bytes = static_cast<uint32_t>(*size);
      }
    }
  }
  if (YAML::Node headers = node["max_request_headers"]) {
    if (auto n = readInt(headers, path + ".max_request_headers", 1, 1000, diags_)) {
      out.max_request_headers = static_cast<uint32_t>(*n);
    }
  }
  if (YAML::Node cap = node["max_connections"]) {
    if (auto n = readInt(cap, path + ".max_connections", 0, 100'000'000, diags_)) {
      out.max_connections = static_cast<uint32_t>(*n);
    }
  }
  const YAML::Node tls = node["tls"];
  if (tls) out.tls = parseListenerTls(tls, path + ".tls", base_dir_, diags_);
  YAML::Node routes = required(node, "routes", path);
  if (!routes) return;
  if (!routes.IsSequence() || routes.size() == 0) {
    diags_.error(routes, path + ".routes", "must be a non-empty list");
    return;
  }
  std::map<std::string, std::string> names;
  for (size_t i = 0; i < routes.size(); ++i) {
    const std::string route_path = indexed(path, "routes", i);
    Route r;
    route(routes[i], route_path, tls, out.name, r);
    if (!r.name.empty()) {
      auto [it, added] = names.emplace(r.name, route_path);
      if (!added) {
        diags_.error(routes[i]["name"], route_path + ".name",
                     "duplicate route name \"" + r.name + "\" (also " + it->second + ")");
      }
    }
    out.routes.push_back(std::move(r));
  }
}

void Loader::route(const YAML::Node& node, const std::string& path,
                   const YAML::Node& listener_tls, const std::string& listener_name, Route& out) {
  if (!checkKeys(node, path,
                 {"name", "match", "cluster", "filters", "idle_timeout", "close_timeout",
                  "require_tls", "client_cert_header"},
                 diags_)) {
    return;
  }
  if (YAML::Node name = required(node, "name", path)) {
    if (auto text = readString(name, path + ".name", diags_)) out.name = *text;
  }
  if (YAML::Node m = node["match"]) match(m, path + ".match", out.match);
  if (YAML::Node cluster = required(node, "cluster", path)) {
    if (auto text = readString(cluster, path + ".cluster", diags_)) {
      out.cluster = *text;
      cluster_refs_.emplace_back(cluster, path + ".cluster");
    }
  }
  positiveDuration(node, "idle_timeout", path, out.idle_timeout, /*allow_zero=*/true);
  positiveDuration(node, "close_timeout", path, out.close_timeout);
  if (YAML::Node list = node["filters"]) filters(list, path + ".filters", out.filters);
  parseRouteTls(node, path, listener_tls, listener_name, out, diags_);
}

void Loader::match(const YAML::Node& node, const std::string& path, Match& out) {
  if (!checkKeys(node, path, {"host", "path", "path_prefix"}, diags_)) return;
  if (YAML::Node host = node["host"]) {
    if (auto text = readString(host, path + ".host", diags_)) {
      std::string h = *text;
      std::transform(h.begin(), h.end(), h.begin(), ::tolower);
      const size_t star = h.find('*');
      if (star != std::string::npos && (star != 0 || h.size() < 3 || h[1] != '.' ||
                                        h.find('*', 1) != std::string::npos)) {
        diags_.error(host, path + ".host",
                     "invalid host \"" + *text + "\" (a wildcard is only allowed as \"*.suffix\")");
      } else if (h.front() == '[' ? h.back() != ']' : h.find(':') != std::string::npos) {
        // The router compares Host without its port: this could never match.
        diags_.error(host, path + ".host",
                     "invalid host \"" + *text + "\" (hosts are matched without a port)");
      } else {
        out.host = h;
      }
    }
  }
  auto readPath = [&](const char* key, std::optional<std::string>& slot) {
    YAML::Node value = node[key];
    if (!value) return;
    auto text = readString(value, child(path, key), diags_);
    if (!text) return;
    if (text->front() != '/') {
      diags_.error(value, child(path, key), "must start with \"/\"");
      return;
    }
    if (text->find_first_of("?#") != std::string::npos) {
      // The router compares the path without its query: this could never match.
      diags_.error(value, child(path, key), "paths are matched without a query (\"?\") or \"#\"");
      return;
    }
    slot = *text;
  };
  readPath("path", out.path_exact);
  readPath("path_prefix", out.path_prefix);
  if (node["path"] && node["path_prefix"]) {
    diags_.error(node, path, "set either \"path\" or \"path_prefix\", not both");
  }
}

void Loader::filters(const YAML::Node& node, const std::string& path,
                     std::vector<FilterSpec>& out) {
  if (!node.IsSequence()) {
    diags_.error(node, path, "must be a list of filters, e.g. - origin: { allow: [...] }");
    return;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    const std::string entry_path = path + "[" + std::to_string(i) + "]";
    if (!entry.IsMap() || entry.size() != 1) {
      diags_.error(entry, entry_path, "each filter is a map with exactly one key: its name");
      continue;
    }
    const auto item = *entry.begin();
    const std::string name = item.first.Scalar();
    const std::string filter_path = entry_path + "." + name;
    if (!catalog_.knows(name)) {
      diags_.error(item.first, filter_path,
                   "unknown filter \"" + name + "\" (known: " + catalog_.names() + ")");
      continue;
    }
    if (auto built = catalog_.build(name, item.second, filter_path, diags_)) {
      out.push_back({name, filter_path, std::move(built)});
    }
  }
}

}  // namespace

LoadResult loadString(const std::string& yaml, const std::string& source_name,
                      const FilterCatalog& filters, const NameResolver& resolve) {
  LoadResult result{nullptr, Diagnostics(source_name)};
  const std::string expanded = expandVariables(yaml, environmentVariable, result.diagnostics);
  if (!result.diagnostics.empty()) return result;
  YAML::Node root;
  try {
    root = YAML::Load(expanded);
  } catch (const YAML::Exception& e) {
    result.diagnostics.error(e.mark.line + 1, e.mark.column + 1, "(root)",
                             "YAML syntax error: " + e.msg);
    return result;
  }
  Loader loader(filters, resolve, std::filesystem::path(source_name).parent_path().string(),
                result.diagnostics);
  std::shared_ptr<Config> config;
  try {
    config = loader.load(root);
  } catch (const YAML::Exception& e) {
    result.diagnostics.error(e.mark.line + 1, e.mark.column + 1, "(root)", e.msg);
  }
  if (!config || !result.diagnostics.empty()) return result;
  config->source = source_name;
  result.config = std::move(config);
  return result;
}

LoadResult loadFile(const std::string& path, const FilterCatalog& filters,
                    const NameResolver& resolve) {
  std::ifstream in(path);
  if (!in) {
    LoadResult result{nullptr, Diagnostics(path)};
    result.diagnostics.error(0, 0, "(root)",
                             std::string("cannot read file: ") + std::strerror(errno));
    return result;
  }
  std::stringstream text;
  text << in.rdbuf();
  return loadString(text.str(), path, filters, resolve);
}

}  // namespace wsgate::config
