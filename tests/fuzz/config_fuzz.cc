// Fuzzes the YAML configuration loader (config/loader.h) with the real filter registry: any text
// must give either a config or a list of diagnostics (never both, never neither), with no crash,
// no exception escaping loadString, and no hang; every error names its key path. A config that
// loads must hold what docs/configuration.md and config/config.h promise of a validated config.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "config/loader.h"
#include "filters/filter.h"
#include "filters/registry.h"
#include "routing/router.h"
#include "tests/fuzz/fuzz_check.h"

using namespace wsgate;

namespace {

bool validAddress(const config::Address& a, uint16_t min_port) {
  return !a.ip.empty() && a.port >= min_port && !a.text().empty();
}

void checkConfig(const config::Config& c) {
  FUZZ_CHECK(c.workers >= 1);  // 0 or absent in the file: one per core
  FUZZ_CHECK(c.source == "fuzz.yaml");
  FUZZ_CHECK(validAddress(c.admin.address, 0));

  FUZZ_CHECK(!c.clusters.empty());
  std::set<std::string> cluster_names;
  for (const auto& cluster : c.clusters) {
    FUZZ_CHECK(!cluster.name.empty());
    FUZZ_CHECK(cluster_names.insert(cluster.name).second);
    if (cluster.type == config::Cluster::Type::kEcho) {
      FUZZ_CHECK(cluster.endpoints.empty());
    } else {
      FUZZ_CHECK(!cluster.endpoints.empty());
      for (const auto& e : cluster.endpoints) FUZZ_CHECK(validAddress(e, 1));
    }
    FUZZ_CHECK(cluster.connect_timeout.count() > 0);
    FUZZ_CHECK(cluster.response_timeout.count() > 0);
    FUZZ_CHECK(c.findCluster(cluster.name) == &cluster);
  }

  FUZZ_CHECK(!c.listeners.empty());
  std::set<std::string> listener_names;
  std::set<std::string> addresses;
  for (const auto& listener : c.listeners) {
    FUZZ_CHECK(!listener.name.empty());
    FUZZ_CHECK(listener_names.insert(listener.name).second);
    FUZZ_CHECK(validAddress(listener.address, 0));
    if (listener.address.port != 0) FUZZ_CHECK(addresses.insert(listener.address.text()).second);
    FUZZ_CHECK(listener.request_timeout.count() > 0);
    FUZZ_CHECK(listener.max_request_bytes >= 1024 && listener.max_request_bytes <= 1024 * 1024);
    FUZZ_CHECK(listener.max_request_headers >= 1 && listener.max_request_headers <= 1000);
    FUZZ_CHECK(!listener.routes.empty());
    std::set<std::string> route_names;
    for (const auto& route : listener.routes) {
      FUZZ_CHECK(!route.name.empty());
      FUZZ_CHECK(route_names.insert(route.name).second);
      FUZZ_CHECK(c.findCluster(route.cluster) != nullptr);
      FUZZ_CHECK(route.idle_timeout.count() >= 0);
      FUZZ_CHECK(route.close_timeout.count() > 0);
      FUZZ_CHECK(!(route.match.path_exact && route.match.path_prefix));
      if (route.match.path_exact) FUZZ_CHECK(route.match.path_exact->starts_with("/"));
      if (route.match.path_prefix) FUZZ_CHECK(route.match.path_prefix->starts_with("/"));
      for (char ch : route.match.host) FUZZ_CHECK(!(ch >= 'A' && ch <= 'Z'));
      for (const auto& spec : route.filters) {
        FUZZ_CHECK(spec.built != nullptr);
        const auto* factory = dynamic_cast<const filters::FilterFactory*>(spec.built.get());
        FUZZ_CHECK(factory != nullptr);
        FUZZ_CHECK(factory->name() == spec.name);
        factory->handshakeFilter();
        factory->newMessageFilter({});
      }
    }
    // Every route can be found by the router with what it matches on. Not checked for values
    // the router can never see (see tests/fuzz/README.md, "Findings"): a host with ':' (the
    // router compares Host without its port) or a path with '?' (the query is ignored).
    wsgate::gateway::Router router(listener);
    for (const auto& route : listener.routes) {
      const auto& m = route.match;
      if (m.host.find(':') != std::string::npos || m.host.starts_with("[")) continue;
      if (m.path_exact && m.path_exact->find('?') != std::string::npos) continue;
      if (m.path_prefix && m.path_prefix->find('?') != std::string::npos) continue;
      const std::string host = m.host.empty()            ? "any.example"
                               : m.host.starts_with("*.") ? "x" + m.host.substr(1)
                                                          : m.host;
      const std::string path = m.path_exact ? *m.path_exact : m.path_prefix ? *m.path_prefix : "/";
      FUZZ_CHECK(router.match(host, path) != nullptr);
    }
  }
}

// Never the network: names starting with "gone" do not resolve, the others resolve to one or
// two addresses depending on their length.
std::vector<config::Resolved> fakeResolve(const std::vector<std::string>& names) {
  std::vector<config::Resolved> out;
  for (const auto& name : names) {
    if (name.rfind("gone", 0) == 0) {
      out.push_back({{}, "Name or service not known"});
    } else if (name.size() % 2 == 0) {
      out.push_back({{"10.0.0.1", "fd00::1"}, ""});
    } else {
      out.push_back({{"10.0.0.2"}, ""});
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // No try/catch: an exception escaping loadString reaches std::terminate from the throwing
  // frame, so libFuzzer's report shows where it was thrown.
  const config::LoadResult result =
      config::loadString(text, "fuzz.yaml", filters::Registry::global(), fakeResolve);
  if (result.config) {
    FUZZ_CHECK(result.diagnostics.empty());
    checkConfig(*result.config);
  } else {
    FUZZ_CHECK(!result.diagnostics.empty());
    for (const auto& d : result.diagnostics.errors()) {
      FUZZ_CHECK(d.file == "fuzz.yaml");
      FUZZ_CHECK(d.line >= 0 && d.column >= 0);
      FUZZ_CHECK(!d.message.empty());
      FUZZ_CHECK(!d.path.empty());
    }
    FUZZ_CHECK(!result.diagnostics.format().empty());
  }
  return 0;
}
