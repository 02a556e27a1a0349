#include "config/loader.h"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "filters/registry.h"

namespace wsgate::config {
namespace {

LoadResult load(const std::string& yaml) {
  return loadString(yaml, "test.yaml", filters::Registry::global());
}

// The single error of `yaml`, formatted.
std::string onlyError(const std::string& yaml) {
  LoadResult result = load(yaml);
  EXPECT_EQ(result.config, nullptr);
  EXPECT_EQ(result.diagnostics.errors().size(), 1u) << result.diagnostics.format();
  return result.diagnostics.errors().empty() ? "" : result.diagnostics.errors()[0].format();
}

const char* kFull = R"(workers: 2
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: public
    address: 127.0.0.1:8080
    routes:
      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
      - name: chat
        match: { host: Chat.Example.com, path_prefix: /chat }
        cluster: chat
        idle_timeout: 5m
        filters:
          - origin: { allow: ["https://chat.example.com"] }
          - message_size: { max_message_bytes: 1MiB }
  - name: v6
    address: "[::1]:8081"
    request_timeout: 3s
    max_request_bytes: 8KiB
    max_request_headers: 32
    max_connections: 5000
    routes:
      - name: any
        match: { path: /exact }
        cluster: echo
        close_timeout: 2s
clusters:
  - name: echo
    type: echo
  - name: chat
    endpoints: ["127.0.0.1:9000", "127.0.0.1:9001"]
    connect_timeout: 2s
)";

TEST(Loader, LoadsTheDocumentedExampleWithEveryField) {
  LoadResult result = load(kFull);
  ASSERT_NE(result.config, nullptr) << result.diagnostics.format();
  const Config& c = *result.config;
  EXPECT_EQ(c.workers, 2u);
  EXPECT_EQ(c.admin.address.text(), "127.0.0.1:9901");
  ASSERT_EQ(c.listeners.size(), 2u);
  const Listener& pub = c.listeners[0];
  EXPECT_EQ(pub.name, "public");
  EXPECT_EQ(pub.address.text(), "127.0.0.1:8080");
  EXPECT_EQ(pub.request_timeout, std::chrono::seconds(10));
  EXPECT_EQ(pub.max_request_bytes, 16u * 1024);
  EXPECT_EQ(pub.max_request_headers, 64u);
  EXPECT_EQ(pub.max_connections, 0u);  // no cap
  ASSERT_EQ(pub.routes.size(), 2u);
  EXPECT_EQ(pub.routes[0].match.path_prefix, "/echo");
  EXPECT_EQ(pub.routes[0].match.host, "");
  EXPECT_EQ(pub.routes[0].idle_timeout.count(), 0);
  EXPECT_EQ(pub.routes[0].close_timeout, std::chrono::seconds(5));
  const Route& chat = pub.routes[1];
  EXPECT_EQ(chat.match.host, "chat.example.com");
  EXPECT_EQ(chat.idle_timeout, std::chrono::minutes(5));
  ASSERT_EQ(chat.filters.size(), 2u);
  EXPECT_EQ(chat.filters[0].name, "origin");
  EXPECT_EQ(chat.filters[0].path, "listeners[0].routes[1].filters[0].origin");
  EXPECT_NE(chat.filters[0].built, nullptr);
  EXPECT_EQ(chat.filters[1].name, "message_size");
  const Listener& v6 = c.listeners[1];
  EXPECT_EQ(v6.address.ip, "::1");
  EXPECT_EQ(v6.address.text(), "[::1]:8081");
  EXPECT_EQ(v6.request_timeout, std::chrono::seconds(3));
  EXPECT_EQ(v6.max_request_bytes, 8u * 1024);
  EXPECT_EQ(v6.max_request_headers, 32u);
  EXPECT_EQ(v6.max_connections, 5000u);
  EXPECT_EQ(v6.routes[0].match.path_exact, "/exact");
  EXPECT_EQ(v6.routes[0].close_timeout, std::chrono::seconds(2));
  ASSERT_EQ(c.clusters.size(), 2u);
  EXPECT_EQ(c.clusters[0].type, Cluster::Type::kEcho);
  EXPECT_EQ(c.clusters[1].endpoints.size(), 2u);
  EXPECT_EQ(c.clusters[1].connect_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.clusters[1].response_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c.findCluster("chat"), &c.clusters[1]);
  EXPECT_EQ(c.findCluster("nope"), nullptr);
}

TEST(Loader, DefaultsWorkersToCoresAndAdminToLoopback) {
  LoadResult result = load(R"(listeners:
  - { name: l, address: 127.0.0.1:0, routes: [ { name: r, cluster: e } ] }
clusters: [ { name: e, type: echo } ]
)");
  ASSERT_NE(result.config, nullptr) << result.diagnostics.format();
  EXPECT_GE(result.config->workers, 1u);
  EXPECT_EQ(result.config->admin.address.text(), "127.0.0.1:9901");
  EXPECT_EQ(result.config->drain.timeout, std::chrono::seconds(30));
}


const char* kBase = R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - name: r
        cluster: e
clusters:
  - name: e
    type: echo
)";

TEST(Loader, DrainTimeoutIsReadAndBounded) {
  LoadResult result = load(std::string(kBase) + "drain: { timeout: 5s }\n");
  ASSERT_NE(result.config, nullptr) << result.diagnostics.format();
  EXPECT_EQ(result.config->drain.timeout, std::chrono::seconds(5));
  EXPECT_EQ(onlyError(std::string(kBase) + "drain: { timeout: 2h }\n"),
            "test.yaml:10:19: drain.timeout: must be at most 1h");
}

TEST(Loader, UnknownKeySuggestsTheClosestOne) {
  EXPECT_EQ(onlyError(std::string(kBase) + "workrs: 2\n"),
            "test.yaml:10:1: workrs: unknown key \"workrs\" (did you mean \"workers\"?)");
}

TEST(Loader, UnknownKeyWithoutNearMatchListsAllowedKeys) {
  EXPECT_EQ(onlyError(std::string(kBase) + "tls: {}\n"),
            "test.yaml:10:1: tls: unknown key \"tls\" (allowed: workers admin drain listeners "
            "clusters)");
}

TEST(Loader, ARootThatIsNotAMapIsNamedRoot) {
  EXPECT_EQ(onlyError("just a string\n"), "test.yaml:1:1: (root): must be a map");
  EXPECT_EQ(onlyError("- a\n- b\n"), "test.yaml:1:1: (root): must be a map");
}

TEST(Loader, AnEmptyKeyIsNamedByItsMap) {
  LoadResult result = load(std::string(kBase) + "\"\": 1\n");
  ASSERT_EQ(result.diagnostics.errors().size(), 1u) << result.diagnostics.format();
  EXPECT_EQ(result.diagnostics.errors()[0].format(),
            "test.yaml:10:1: (root): unknown key \"\" (allowed: workers admin drain listeners "
            "clusters)");
}

TEST(Loader, MissingRequiredKeyPointsAtItsMap) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    routes: [ { name: r, cluster: e } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:2:5: listeners[0]: missing required key \"address\"");
}

TEST(Loader, DuplicateNamesAreErrors) {
  EXPECT_EQ(onlyError(std::string(kBase) + "  - name: e\n    type: echo\n"),
            "test.yaml:10:11: clusters[1].name: duplicate cluster name \"e\" (also clusters[0])");
}

TEST(Loader, UnknownClusterNamesTheKnownOnes) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - name: r
        cluster: chat-v2
clusters:
  - { name: echo, type: echo }
  - { name: chat, endpoints: ["127.0.0.1:1"] }
)"),
            "test.yaml:6:18: listeners[0].routes[0].cluster: unknown cluster \"chat-v2\" "
            "(known: echo, chat)");
}

TEST(Loader, BadAddressesExplainTheForm) {
  EXPECT_EQ(onlyError(std::string(kBase) + "admin: { address: localhost:9901 }\n"),
            "test.yaml:10:19: admin.address: invalid address \"localhost:9901\": \"localhost\" "
            "is not an IP address (use a literal IP such as 127.0.0.1 or [::1])");
  EXPECT_EQ(onlyError(std::string(kBase) + "admin: { address: \"127.0.0.1:70000\" }\n"),
            "test.yaml:10:19: admin.address: invalid address \"127.0.0.1:70000\": port must be "
            "a number from 0 to 65535");
  EXPECT_EQ(onlyError(std::string(kBase) + "admin: { address: \"::1:80\" }\n"),
            "test.yaml:10:19: admin.address: invalid address \"::1:80\": expected IP:port, e.g. "
            "127.0.0.1:8080 or [::1]:8080");
}

TEST(Loader, EndpointPortZeroIsRejected) {
  EXPECT_EQ(onlyError(std::string(kBase) + "  - { name: s, endpoints: [\"127.0.0.1:0\"] }\n"),
            "test.yaml:10:28: clusters[1].endpoints[0]: invalid address \"127.0.0.1:0\": port "
            "must be a number from 1 to 65535");
}

TEST(Loader, BadDurationAndSizeAndRange) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    request_timeout: 10
    routes: [ { name: r, cluster: e } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:22: listeners[0].request_timeout: invalid duration \"10\" (a number "
            "with a unit: ms, s, m or h, e.g. 30s)");
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    max_request_bytes: 12XB
    routes: [ { name: r, cluster: e } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:24: listeners[0].max_request_bytes: invalid size \"12XB\" (a number "
            "with an optional unit: B, KiB, MiB, GiB, KB, MB, GB)");
  EXPECT_EQ(onlyError(std::string(kBase) + "workers: 0\n"),
            "test.yaml:10:10: workers: must be an integer from 1 to 256, not \"0\"");
  EXPECT_EQ(onlyError(std::string(kBase) + "  - { name: s, endpoints: [\"127.0.0.1:1\"], "
                                           "connect_timeout: 0s }\n"),
            "test.yaml:10:61: clusters[1].connect_timeout: must be greater than 0");
}

TEST(Loader, PathsMustStartWithSlashAndNotBoth) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ { name: r, cluster: e, match: { path_prefix: echo } } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:60: listeners[0].routes[0].match.path_prefix: must start with \"/\"");
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ { name: r, cluster: e, match: { path: /a, path_prefix: /b } } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:45: listeners[0].routes[0].match: set either \"path\" or "
            "\"path_prefix\", not both");
}

TEST(Loader, WildcardHostOnlyAsPrefix) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ { name: r, cluster: e, match: { host: "a.*.com" } } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:53: listeners[0].routes[0].match.host: invalid host \"a.*.com\" (a "
            "wildcard is only allowed as \"*.suffix\")");
}

TEST(Loader, HostWithAPortAndPathWithAQueryCouldNeverMatch) {
  const auto routeMatching = [](const std::string& match) {
    return "listeners:\n  - name: l\n    address: 127.0.0.1:0\n"
           "    routes: [ { name: r, cluster: e, match: " + match + " } ]\n"
           "clusters: [ { name: e, type: echo } ]\n";
  };
  EXPECT_EQ(onlyError(routeMatching("{ host: \"chat.example.com:8443\" }")),
            "test.yaml:4:53: listeners[0].routes[0].match.host: invalid host "
            "\"chat.example.com:8443\" (hosts are matched without a port)");
  EXPECT_EQ(onlyError(routeMatching("{ path_prefix: \"/chat?room=1\" }")),
            "test.yaml:4:60: listeners[0].routes[0].match.path_prefix: paths are matched without a "
            "query (\"?\") or \"#\"");
  EXPECT_EQ(onlyError(routeMatching("{ path: \"/chat#top\" }")),
            "test.yaml:4:53: listeners[0].routes[0].match.path: paths are matched without a "
            "query (\"?\") or \"#\"");
  EXPECT_NE(load(routeMatching("{ host: \"[::1]\" }")).config, nullptr);
}

TEST(Loader, EchoClusterTakesNoEndpointsAndStaticNeedsThem) {
  EXPECT_EQ(onlyError(std::string(kBase) + "    endpoints: [\"127.0.0.1:1\"]\n"),
            "test.yaml:10:16: clusters[0].endpoints: an echo cluster has no endpoints");
  EXPECT_EQ(onlyError(std::string(kBase) + "  - name: s\n"),
            "test.yaml:10:5: clusters[1]: missing required key \"endpoints\"");
}

TEST(Loader, RejectsABadMaxConnectionsNamingItsPath) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    max_connections: -1
    routes: [ { name: r, cluster: e } ]
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:4:22: listeners[0].max_connections: must be an integer from 0 to "
            "100000000, not \"-1\"");
}

TEST(Loader, UnknownFilterNamesTheKnownOnes) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - name: r
        cluster: e
        filters:
          - bandwidth: {}
clusters: [ { name: e, type: echo } ]
)"),
            "test.yaml:8:13: listeners[0].routes[0].filters[0].bandwidth: unknown filter "
            "\"bandwidth\" (known: connection_limit, keepalive, max_duration, message_size, "
            "origin, rate_limit, subprotocol, utf8)");
}

TEST(Loader, FilterErrorsCarryTheirPath) {
  LoadResult result = load(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - name: r
        cluster: e
        filters:
          - message_size: { max_mesage_bytes: 1MiB }
clusters: [ { name: e, type: echo } ]
)");
  EXPECT_EQ(result.config, nullptr);
  EXPECT_EQ(result.diagnostics.format(),
            "test.yaml:8:29: listeners[0].routes[0].filters[0].message_size.max_mesage_bytes: "
            "unknown key \"max_mesage_bytes\" (did you mean \"max_message_bytes\"?)\n"
            "test.yaml:8:27: listeners[0].routes[0].filters[0].message_size: set "
            "max_frame_bytes, max_message_bytes or both\n");
}

TEST(Loader, YamlSyntaxErrorHasLineAndColumn) {
  EXPECT_EQ(onlyError("listeners: [\n  - name: x\n"),
            "test.yaml:2:3: (root): YAML syntax error: illegal block entry");
}

TEST(Loader, UnreadableFileIsAnError) {
  LoadResult result = loadFile("/nonexistent/wsgate.yaml", filters::Registry::global());
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.diagnostics.errors().size(), 1u);
  EXPECT_EQ(result.diagnostics.errors()[0].format(),
            "/nonexistent/wsgate.yaml:0:0: (root): cannot read file: No such file or directory");
}

TEST(Loader, ReportsEveryErrorAtOnce) {
  LoadResult result = load(R"(workers: many
listeners:
  - name: l
    address: nowhere
    routes: [ { name: r, cluster: missing } ]
clusters: [ { name: e, type: magic } ]
)");
  EXPECT_EQ(result.config, nullptr);
  EXPECT_EQ(result.diagnostics.errors().size(), 4u) << result.diagnostics.format();
}

}  // namespace
}  // namespace wsgate::config

namespace wsgate::config {
namespace {

// A resolver that knows a fixed table and records what it was asked.
struct FakeResolver {
  std::map<std::string, std::vector<std::string>> table;
  std::vector<std::vector<std::string>> calls;
  NameResolver function() {
    return [this](const std::vector<std::string>& names) {
      calls.push_back(names);
      std::vector<Resolved> out;
      for (const auto& name : names) {
        auto it = table.find(name);
        if (it == table.end()) {
          out.push_back({{}, "Name or service not known"});
        } else {
          out.push_back({it->second, ""});
        }
      }
      return out;
    };
  }
};

TEST(LoaderNames, AHostNameBecomesOneEndpointPerAddressInTheWrittenOrder) {
  FakeResolver dns{{{"backend.internal", {"10.0.0.5", "fd00::5"}}, {"other", {"10.0.0.9"}}}, {}};
  LoadResult result = loadString(std::string(kBase) +
                                     "  - name: s\n"
                                     "    endpoints: [\"10.0.0.1:80\", \"backend.internal:9000\",\n"
                                     "                \"other:81\", \"backend.internal:9001\"]\n",
                                 "test.yaml", filters::Registry::global(), dns.function());
  ASSERT_NE(result.config, nullptr) << result.diagnostics.format();
  const Cluster* s = result.config->findCluster("s");
  ASSERT_NE(s, nullptr);
  std::vector<std::string> texts;
  for (const auto& e : s->endpoints) texts.push_back(e.text());
  EXPECT_EQ(texts, (std::vector<std::string>{
                       "10.0.0.1:80", "backend.internal:9000 (10.0.0.5)",
                       "backend.internal:9000 (fd00::5)", "other:81 (10.0.0.9)",
                       "backend.internal:9001 (10.0.0.5)", "backend.internal:9001 (fd00::5)"}));
  EXPECT_EQ(s->endpoints[2].ip, "fd00::5");
  EXPECT_EQ(s->endpoints[2].port, 9000);
  // Every distinct name once, in one call.
  EXPECT_EQ(dns.calls, (std::vector<std::vector<std::string>>{{"backend.internal", "other"}}));
}

TEST(LoaderNames, AnUnresolvableNameIsAnErrorAtItsEndpoint) {
  FakeResolver dns;
  LoadResult result =
      loadString(std::string(kBase) + "  - { name: s, endpoints: [\"gone.internal:80\"] }\n",
                 "test.yaml", filters::Registry::global(), dns.function());
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.diagnostics.errors().size(), 1u) << result.diagnostics.format();
  EXPECT_EQ(result.diagnostics.errors()[0].format(),
            "test.yaml:10:28: clusters[1].endpoints[0]: cannot resolve \"gone.internal\": Name or "
            "service not known");
}

TEST(LoaderNames, WithoutAResolverANameIsAnError) {
  EXPECT_EQ(onlyError(std::string(kBase) + "  - { name: s, endpoints: [\"backend:80\"] }\n"),
            "test.yaml:10:28: clusters[1].endpoints[0]: cannot resolve \"backend\": no resolver");
}

TEST(LoaderNames, WhatIsNeitherAnIpNorAHostNameIsRejectedBeforeAnyLookup) {
  FakeResolver dns;
  for (const char* bad : {"bad_name:80", "-x.example:80", "x-.example:80", "a..b:80",
                          "300.1.1.1:80", "example.com.:80", "[backend]:80"}) {
    LoadResult result = loadString(
        std::string(kBase) + "  - { name: s, endpoints: [\"" + bad + "\"] }\n", "test.yaml",
        filters::Registry::global(), dns.function());
    ASSERT_EQ(result.diagnostics.errors().size(), 1u) << bad;
    EXPECT_NE(result.diagnostics.errors()[0].format().find("invalid address"), std::string::npos)
        << result.diagnostics.format();
  }
  EXPECT_TRUE(dns.calls.empty());
}

TEST(LoaderNames, ListenersAndAdminStillNeedAnIp) {
  FakeResolver dns{{{"localhost", {"127.0.0.1"}}}, {}};
  LoadResult result =
      loadString(std::string(kBase) + "admin: { address: localhost:9901 }\n", "test.yaml",
                 filters::Registry::global(), dns.function());
  ASSERT_EQ(result.diagnostics.errors().size(), 1u);
  EXPECT_NE(result.diagnostics.errors()[0].format().find("is not an IP address"),
            std::string::npos);
}

}  // namespace
}  // namespace wsgate::config
