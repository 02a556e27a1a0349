#include "filters/connection_limit.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <thread>

#include "config/diagnostics.h"
#include "filters/registry.h"

namespace wsgate::filters {
namespace {

using namespace std::chrono_literals;

struct Built {
  std::shared_ptr<const ConnectionLimitFilter> filter;
  std::string errors;
};

Built build(const std::string& yaml) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build("connection_limit", YAML::Load(yaml),
                                        "routes[0].filters[0].connection_limit", diags);
  return {std::dynamic_pointer_cast<const ConnectionLimitFilter>(built), diags.format()};
}

TEST(ConnectionLimitFilter, IsAHandshakeFilterOnly) {
  auto b = build("{ per_route: 10 }");
  ASSERT_TRUE(b.filter) << b.errors;
  EXPECT_EQ(b.filter->name(), "connection_limit");
  EXPECT_NE(b.filter->handshakeFilter(), nullptr);
  EXPECT_EQ(b.filter->newMessageFilter({}), nullptr);
}

TEST(ConnectionLimitFilter, AcceptsEveryKey) {
  auto b = build(R"({ per_route: 10000, per_client_ip: 50,
                      handshakes_per_ip: { rate: 20/s, burst: 40 }, ipv6_prefix: 56,
                      max_tracked_clients: 1000 })");
  EXPECT_TRUE(b.filter) << b.errors;
  EXPECT_TRUE(build("{ handshakes_per_ip: { rate: 600/m } }").filter);
}

TEST(ConnectionLimitFilter, RejectsBadConfigNamingPathAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{}", "f.yaml:1:1: routes[0].filters[0].connection_limit: set per_route, per_client_ip"},
      {"{ per_route: 0 }",
       "f.yaml:1:14: routes[0].filters[0].connection_limit.per_route: must "
       "be an integer from 1"},
      {"{ per_client_ip: ten }", "connection_limit.per_client_ip: must be an integer"},
      {"{ per_client_ip: 5, per_ip: 3 }", "connection_limit.per_ip: unknown key \"per_ip\""},
      {"{ handshakes_per_ip: { burst: 4 } }",
       "connection_limit.handshakes_per_ip: missing required key \"rate\""},
      {"{ handshakes_per_ip: { rate: fast } }",
       "connection_limit.handshakes_per_ip.rate: invalid rate \"fast\""},
      {"{ handshakes_per_ip: { rate: 5/s, burst: 0 } }",
       "connection_limit.handshakes_per_ip.burst: must be an integer from 1"},
      {"{ handshakes_per_ip: { rate: 5/s, brust: 3 } }",
       "connection_limit.handshakes_per_ip.brust: unknown key \"brust\" (did you mean \"burst\"?)"},
      {"{ per_route: 3, ipv6_prefix: 129 }", "connection_limit.ipv6_prefix: must be an integer"},
      {"{ per_route: 3, max_tracked_clients: 0 }", "max_tracked_clients: must be an integer"},
      {"[1, 2]", "connection_limit"},
  };
  for (const auto& [yaml, want] : cases) {
    auto b = build(yaml);
    EXPECT_FALSE(b.filter) << yaml;
    EXPECT_NE(b.errors.find(want), std::string::npos) << yaml << "\n" << b.errors;
  }
  // Reported on the line of the bad value.
  auto b = build("per_route: 5\nhandshakes_per_ip:\n  rate: nope\n");
  EXPECT_NE(b.errors.find("f.yaml:3:9: routes[0].filters[0].connection_limit.handshakes_per_ip"
                          ".rate"),
            std::string::npos)
      << b.errors;
}

TEST(ConnectionLimitFilter, CapsSessionsPerClientAddressWith429) {
  const auto kStart = Clock::now();
  auto b = build("{ per_client_ip: 2 }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
  auto refused = b.filter->admitAt("10.0.0.1", held, kStart);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429u);
  EXPECT_EQ(refused->label, "per_client_ip");
  EXPECT_GE(refused->retry_after_seconds, 1u);
  EXPECT_EQ(held.size(), 2u);
  EXPECT_FALSE(b.filter->admitAt("10.0.0.2", held, kStart));  // another address is not affected
}

TEST(ConnectionLimitFilter, CapsSessionsPerRouteWith503) {
  const auto kStart = Clock::now();
  auto b = build("{ per_route: 2, per_client_ip: 5 }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
  EXPECT_FALSE(b.filter->admitAt("10.0.0.2", held, kStart));
  auto refused = b.filter->admitAt("10.0.0.3", held, kStart);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503u);
  EXPECT_EQ(refused->label, "per_route");
  EXPECT_GE(refused->retry_after_seconds, 1u);
  EXPECT_EQ(b.filter->liveSessions(), 2u);
  // The refused address left nothing behind.
  EXPECT_EQ(b.filter->trackedClients(), 2u);
}

TEST(ConnectionLimitFilter, GivesSlotsBackWhenAdmissionsAreDestroyed) {
  const auto kStart = Clock::now();
  auto b = build("{ per_route: 1, per_client_ip: 1 }");
  ASSERT_TRUE(b.filter) << b.errors;
  {
    Admissions held;
    EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
    EXPECT_EQ(b.filter->liveSessions(), 1u);
    EXPECT_TRUE(b.filter->admitAt("10.0.0.1", held, kStart));
    EXPECT_TRUE(b.filter->admitAt("10.0.0.2", held, kStart));
  }
  EXPECT_EQ(b.filter->liveSessions(), 0u);
  EXPECT_EQ(b.filter->trackedClients(), 0u);  // no rate: the entry goes with its last session
  Admissions again;
  EXPECT_FALSE(b.filter->admitAt("10.0.0.2", again, kStart));
}

TEST(ConnectionLimitFilter, PerRouteOnlyTracksNoAddress) {
  const auto kStart = Clock::now();
  auto b = build("{ per_route: 3 }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
  EXPECT_TRUE(b.filter->admitAt("10.0.0.9", held, kStart));
  EXPECT_EQ(b.filter->trackedClients(), 0u);
}

TEST(ConnectionLimitFilter, LimitsHandshakeRatePerAddressWithRetryAfter) {
  const auto kStart = Clock::now();
  auto b = build("{ handshakes_per_ip: { rate: 2/s, burst: 3 } }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart)) << i;
  held.clear();  // live sessions do not matter: only new handshakes are counted
  auto refused = b.filter->admitAt("10.0.0.1", held, kStart);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429u);
  EXPECT_EQ(refused->label, "handshake_rate");
  EXPECT_EQ(refused->retry_after_seconds, 1u);  // 0.5 s rounded up
  EXPECT_FALSE(b.filter->admitAt("10.0.0.2", held, kStart));
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart + 500ms));
  EXPECT_TRUE(b.filter->admitAt("10.0.0.1", held, kStart + 500ms));
}

TEST(ConnectionLimitFilter, RetryAfterIsTheTimeUntilATokenRoundedUp) {
  const auto kStart = Clock::now();
  auto b = build("{ handshakes_per_ip: { rate: 6/m, burst: 1 } }");  // one per 10 s
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));
  auto refused = b.filter->admitAt("10.0.0.1", held, kStart + 2500ms);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->retry_after_seconds, 8u);
}

TEST(ConnectionLimitFilter, GroupsIpv6ByPrefixAndMappedIpv4AsIpv4) {
  const auto kStart = Clock::now();
  auto b = build("{ per_client_ip: 1 }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  EXPECT_FALSE(b.filter->admitAt("2001:db8:1:2::1", held, kStart));
  EXPECT_TRUE(b.filter->admitAt("2001:db8:1:2:ffff::7", held, kStart));  // same /64
  EXPECT_FALSE(b.filter->admitAt("2001:db8:1:3::1", held, kStart));
  EXPECT_FALSE(b.filter->admitAt("192.0.2.1", held, kStart));
  EXPECT_TRUE(b.filter->admitAt("::ffff:192.0.2.1", held, kStart));

  using F = ConnectionLimitFilter;
  EXPECT_EQ(F::keyOf("2001:db8::1", 32), F::keyOf("2001:db8:ffff::2", 32));
  EXPECT_NE(F::keyOf("2001:db8::1", 128), F::keyOf("2001:db8::2", 128));
  EXPECT_EQ(F::keyOf("2001:db8::1", 127), F::keyOf("2001:db8::0", 127));
  EXPECT_NE(F::keyOf("10.0.0.1", 64), F::keyOf("10.0.0.2", 64));
}

TEST(ConnectionLimitFilter, ForgetsAddressesOnceIdleWithAFullBucket) {
  // A token a second: the buckets stay short of full for the whole test, then are full.
  auto b = build("{ per_client_ip: 5, handshakes_per_ip: { rate: 1/s, burst: 10 } }");
  ASSERT_TRUE(b.filter) << b.errors;
  const auto start = Clock::now();
  {
    Admissions held;
    for (int i = 0; i < 100; ++i) {
      const std::string ip = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
      EXPECT_FALSE(b.filter->admitAt(ip, held, start));
    }
    EXPECT_EQ(b.filter->trackedClients(), 100u);
  }
  // Sessions ended, buckets not yet full again: still remembered, so reconnecting at once does
  // not reset the rate.
  EXPECT_EQ(b.filter->trackedClients(), 100u);
  b.filter->sweep(Clock::now());
  EXPECT_EQ(b.filter->trackedClients(), 100u);
  b.filter->sweep(Clock::now() + 2s);
  EXPECT_EQ(b.filter->trackedClients(), 0u);
}

TEST(ConnectionLimitFilter, HandshakesSweepIdleAddressesAsTheyGo) {
  const auto kStart = Clock::now();
  auto b = build("{ handshakes_per_ip: { rate: 100/s, burst: 1 } }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  // A new address a millisecond: a bucket refills in 10 ms, so the table stays small.
  for (int i = 0; i < 5000; ++i) {
    const std::string ip = "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) +
                           "." + std::to_string(i % 256);
    EXPECT_FALSE(b.filter->admitAt(ip, held, kStart + i * 1ms));
    held.clear();
    EXPECT_LE(b.filter->trackedClients(), 20u);
  }
}

TEST(ConnectionLimitFilter, RefusesNewAddressesWhenTheTableIsFull) {
  const auto kStart = Clock::now();
  auto b = build("{ per_client_ip: 5, max_tracked_clients: 3 }");
  ASSERT_TRUE(b.filter) << b.errors;
  Admissions held;
  for (const char* ip : {"10.0.0.1", "10.0.0.2", "10.0.0.3"}) {
    EXPECT_FALSE(b.filter->admitAt(ip, held, kStart)) << ip;
  }
  auto refused = b.filter->admitAt("10.0.0.4", held, kStart);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503u);
  EXPECT_EQ(refused->label, "client_table_full");
  EXPECT_EQ(b.filter->trackedClients(), 3u);
  EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, kStart));  // a known address still passes
  held.pop_back();                                            // 10.0.0.1 still has one
  held.erase(held.begin() + 1);                               // 10.0.0.2's only session
  EXPECT_FALSE(b.filter->admitAt("10.0.0.4", held, kStart));
}

TEST(ConnectionLimitFilter, CountsHoldAcrossThreads) {
  auto b = build("{ per_route: 1000, per_client_ip: 1000 }");
  ASSERT_TRUE(b.filter) << b.errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        Admissions held;
        EXPECT_FALSE(b.filter->admitAt("10.0.0.1", held, Clock::now()));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(b.filter->liveSessions(), 0u);
  EXPECT_EQ(b.filter->trackedClients(), 0u);
}

}  // namespace
}  // namespace wsgate::filters

namespace wsgate::filters {
namespace {

Built buildAt(const std::string& yaml, const std::string& path) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build("connection_limit", YAML::Load(yaml), path, diags);
  return {std::dynamic_pointer_cast<const ConnectionLimitFilter>(built), diags.format()};
}

TEST(ConnectionLimitReload, TheSamePlaceAndLimitsKeepCountingTheSessionsOfBefore) {
  const auto now = Clock::time_point{} + std::chrono::hours(1);
  auto before = buildAt("{ per_route: 2 }", "listeners[0].routes[0].filters[0].connection_limit");
  ASSERT_TRUE(before.filter) << before.errors;
  Admissions held;
  EXPECT_FALSE(before.filter->admitAt("10.0.0.1", held, now));
  EXPECT_FALSE(before.filter->admitAt("10.0.0.2", held, now));
  // A reload builds the filter again: same place, same limits, the two sessions still count.
  auto after = buildAt("{ per_route: 2 }", "listeners[0].routes[0].filters[0].connection_limit");
  EXPECT_EQ(after.filter->liveSessions(), 2u);
  Admissions more;
  EXPECT_TRUE(after.filter->admitAt("10.0.0.3", more, now));
  held.clear();  // the sessions of before end: their slots free the shared count
  EXPECT_EQ(after.filter->liveSessions(), 0u);
  // Other limits, or another place: counts of their own.
  auto changed = buildAt("{ per_route: 3 }", "listeners[0].routes[0].filters[0].connection_limit");
  auto elsewhere = buildAt("{ per_route: 2 }", "listeners[0].routes[1].filters[0].connection_limit");
  EXPECT_FALSE(changed.filter->admitAt("10.0.0.4", more, now));
  EXPECT_EQ(after.filter->liveSessions(), 0u);
  EXPECT_EQ(elsewhere.filter->liveSessions(), 0u);
}

}  // namespace
}  // namespace wsgate::filters
