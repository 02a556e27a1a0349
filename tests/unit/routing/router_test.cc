#include "routing/router.h"

#include <gtest/gtest.h>

#include "config/loader.h"
#include "filters/registry.h"

namespace wsgate::gateway {
namespace {

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto result = config::loadString(R"(listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - { name: chat, match: { host: chat.example.com, path_prefix: /chat }, cluster: e }
      - { name: wild, match: { host: "*.example.org" }, cluster: e }
      - { name: exact, match: { path: /status }, cluster: e }
      - { name: echo, match: { path_prefix: /echo }, cluster: e }
      - { name: fallback, match: { host: fallback.test }, cluster: e }
clusters: [ { name: e, type: echo } ]
)",
                                     "router.yaml", filters::Registry::global());
    ASSERT_NE(result.config, nullptr) << result.diagnostics.format();
    config_ = result.config;
  }

  std::string route(std::string_view host, std::string_view target) {
    Router router(config_->listeners[0]);
    const config::Route* r = router.match(host, target);
    return r ? r->name : "(none)";
  }

  std::shared_ptr<const config::Config> config_;
};

TEST_F(RouterTest, MatchesExactHostCaseInsensitivelyWithoutPort) {
  EXPECT_EQ(route("chat.example.com", "/chat/room"), "chat");
  EXPECT_EQ(route("CHAT.Example.COM:8080", "/chat"), "chat");
  EXPECT_EQ(route("other.example.com", "/chat"), "(none)");
}

TEST_F(RouterTest, WildcardHostMatchesSubdomainsButNotTheBareDomain) {
  EXPECT_EQ(route("a.example.org", "/x"), "wild");
  EXPECT_EQ(route("a.b.Example.org:443", "/x"), "wild");
  EXPECT_EQ(route("example.org", "/x"), "(none)");
  EXPECT_EQ(route("badexample.org", "/x"), "(none)");
}

TEST_F(RouterTest, ExactPathIgnoresQueryString) {
  EXPECT_EQ(route("h", "/status"), "exact");
  EXPECT_EQ(route("h", "/status?verbose=1"), "exact");
  EXPECT_EQ(route("h", "/status/more"), "(none)");
}

TEST_F(RouterTest, PrefixIsAPlainStringPrefix) {
  EXPECT_EQ(route("h", "/echo"), "echo");
  EXPECT_EQ(route("h", "/echo/deeper?q"), "echo");
  EXPECT_EQ(route("h", "/echoes"), "echo");
  EXPECT_EQ(route("h", "/ech"), "(none)");
}

TEST_F(RouterTest, FirstMatchInConfigOrderWins) {
  // "*.example.org" comes before "/echo": a wildcard host with an echo path goes to wild.
  EXPECT_EQ(route("x.example.org", "/echo"), "wild");
  EXPECT_EQ(route("fallback.test", "/echo"), "echo");
  EXPECT_EQ(route("fallback.test", "/anything"), "fallback");
}

TEST_F(RouterTest, HandlesIpv6HostHeader) {
  EXPECT_EQ(route("[::1]:8080", "/echo"), "echo");
}

TEST_F(RouterTest, NoMatchReturnsNull) { EXPECT_EQ(route("", "/"), "(none)"); }

// Built in code, not through the loader: nothing has lower-cased the patterns.
config::Route makeRoute(std::string name, std::string host, std::optional<std::string> prefix) {
  config::Route r;
  r.name = std::move(name);
  r.match.host = std::move(host);
  r.match.path_prefix = std::move(prefix);
  return r;
}

TEST(Router, AnyHostRouteCatchesWhatEarlierRoutesMiss) {
  config::Listener listener;
  listener.routes.push_back(makeRoute("api", "API.Example.com", "/v1"));
  listener.routes.push_back(makeRoute("ipv6", "[::1]", std::nullopt));
  listener.routes.push_back(makeRoute("any", "", std::nullopt));
  Router router(listener);
  auto name = [&](std::string_view host, std::string_view target) {
    const config::Route* r = router.match(host, target);
    return r ? r->name : "(none)";
  };
  EXPECT_EQ(name("api.example.COM", "/v1/users?page=2"), "api");
  EXPECT_EQ(name("api.example.com", "/v2"), "any");
  EXPECT_EQ(name("[::1]:9000", "/"), "ipv6");
  EXPECT_EQ(name("[::1]", "/"), "ipv6");
  EXPECT_EQ(name("[::2]:9000", "/"), "any");
  EXPECT_EQ(name("", "/"), "any");
}

TEST(Router, QueryStringNeverCountsTowardsThePrefix) {
  config::Listener listener;
  listener.routes.push_back(makeRoute("q", "", "/chat?room"));
  Router router(listener);
  EXPECT_EQ(router.match("h", "/chat?room=1"), nullptr);
}

TEST(Router, NoRoutesMatchesNothing) {
  config::Listener listener;
  EXPECT_EQ(Router(listener).match("h", "/"), nullptr);
}

}  // namespace
}  // namespace wsgate::gateway
