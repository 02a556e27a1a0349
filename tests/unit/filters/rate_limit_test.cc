#include "filters/rate_limit.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/registry.h"
#include "built_filter.h"

namespace wsgate::filters {
namespace {

using namespace std::chrono_literals;

Built build(const std::string& yaml) { return buildFilter("rate_limit", yaml); }

constexpr Direction kC2U = Direction::kClientToUpstream;
constexpr Direction kU2C = Direction::kUpstreamToClient;

FrameEvent frame(Direction d, uint8_t opcode, uint64_t length, bool fin = true) {
  return {d, opcode, fin, false, length, opcode >= 8 ? 0 : length};
}

// A session's filter, driven with made-up times.
struct Limited {
  explicit Limited(const std::string& yaml) : built(build(yaml)) {
    EXPECT_TRUE(built.factory) << built.errors;
    const auto& config = static_cast<const RateLimitFilter&>(*built.factory);
    session = std::make_unique<RateLimitSession>(config, t0);
  }
  FrameVerdict at(std::chrono::microseconds when, const FrameEvent& f) {
    return session->onFrameAt(f, t0 + when);
  }

  Clock::time_point t0 = Clock::now();
  Built built;
  std::unique_ptr<RateLimitSession> session;
};

TEST(RateLimitFilter, IsAMessageFilterOnly) {
  auto b = build("{ client_to_upstream: { messages: 10/s } }");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->name(), "rate_limit");
  EXPECT_EQ(b.factory->handshakeFilter(), nullptr);
  auto first = b.factory->newMessageFilter({});
  auto second = b.factory->newMessageFilter({});
  ASSERT_TRUE(first && second);
  EXPECT_NE(first.get(), second.get());  // buckets per session
}

TEST(RateLimitFilter, ThrottlesAfterTheBurstUntilTheNextTokenIsDue) {
  Limited f("{ client_to_upstream: { messages: 100/s, burst_messages: 5 } }");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(f.at(0us, frame(kC2U, 2, 10)).kind(), FrameVerdict::Kind::kContinue) << i;
  }
  // The fifth empties the bucket: the source waits for the next token, 10 ms at 100/s.
  auto fifth = f.at(0us, frame(kC2U, 2, 10));
  ASSERT_EQ(fifth.kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_GE(fifth.until() - f.t0, 10ms);
  EXPECT_LT(fifth.until() - f.t0, 10ms + 1us);
  // Frames read together with it pass too, and push the time further: 10 ms per message.
  auto more = f.at(0us, frame(kC2U, 2, 10));
  for (int i = 0; i < 8; ++i) more = f.at(0us, frame(kC2U, 1, 10));
  ASSERT_EQ(more.kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_GE(more.until() - f.t0, 100ms);
  EXPECT_LT(more.until() - f.t0, 100ms + 1us);
  // Once that time has come, one message is due again, with no wait after it beyond its own.
  auto later = f.at(100ms, frame(kC2U, 2, 10));
  ASSERT_EQ(later.kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_GE(later.until() - f.t0, 110ms);
  EXPECT_LT(later.until() - f.t0, 110ms + 1us);
}

TEST(RateLimitFilter, ASenderAtFullSpeedIsHeldToTheRateAfterTheBurst) {
  Limited f("{ client_to_upstream: { messages: 100/s, burst_messages: 200 } }");
  // Reads of 7 messages each, the next read no sooner than the verdict allows.
  auto now = 0us;
  int sent = 0;
  while (now < 5s) {
    Clock::time_point until{};
    for (int i = 0; i < 7; ++i, ++sent) {
      const auto v = f.at(now, frame(kC2U, 2, 100));
      if (v.kind() == FrameVerdict::Kind::kThrottle) until = std::max(until, v.until());
    }
    if (until > f.t0 + now) now = std::chrono::ceil<std::chrono::microseconds>(until - f.t0);
  }
  // Each read starts when one token is there: the loop ends with that one token unspent.
  EXPECT_GE(sent, 200 + 500 - 1);
  EXPECT_LE(sent, 200 + 500 + 7);  // at most one read ahead
}

TEST(RateLimitFilter, CountsAMessageAtItsFirstFrameOnly) {
  Limited f("{ client_to_upstream: { messages: 1/s, burst_messages: 1, action: close } }");
  EXPECT_FALSE(f.at(0us, frame(kC2U, 1, 10, false)).closes());
  EXPECT_FALSE(f.at(0us, frame(kC2U, 0, 10, false)).closes());  // continuations are free
  EXPECT_FALSE(f.at(0us, frame(kC2U, 0, 10, true)).closes());
  auto second = f.at(0us, frame(kC2U, 2, 10));
  ASSERT_TRUE(second.closes());
  EXPECT_EQ(second.code(), 1008);
  EXPECT_EQ(second.reason(), "message rate exceeded");
  EXPECT_EQ(second.label(), "message_rate");
}

TEST(RateLimitFilter, CloseActionClosesWith1008OverTheRateAndNotWithin) {
  Limited f("{ upstream_to_client: { messages: 10/s, action: close } }");  // burst 10
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(f.at(0us, frame(kU2C, 1, 5)).closes()) << i;
  EXPECT_TRUE(f.at(0us, frame(kU2C, 1, 5)).closes());
  // The refused message took nothing: the next token is due 100 ms later, as for any.
  EXPECT_TRUE(f.at(99ms, frame(kU2C, 1, 5)).closes());
  EXPECT_FALSE(f.at(100ms, frame(kU2C, 1, 5)).closes());
  // Never a throttle with action: close.
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(f.at(100ms, frame(kU2C, 1, 5)).kind(), FrameVerdict::Kind::kThrottle);
  }
}

TEST(RateLimitFilter, ByteRateCountsDataPayloadOfEveryFrame) {
  Limited f("{ client_to_upstream: { bytes: 1KiB/s, burst_bytes: 1KiB, action: close } }");
  EXPECT_FALSE(f.at(0us, frame(kC2U, 2, 600, false)).closes());
  auto over = f.at(0us, frame(kC2U, 0, 600));  // the continuation's bytes count
  ASSERT_TRUE(over.closes());
  EXPECT_EQ(over.code(), 1008);
  EXPECT_EQ(over.reason(), "byte rate exceeded");
  EXPECT_EQ(over.label(), "byte_rate");
  // 1 KiB/s: the missing 176 bytes come in about 172 ms.
  EXPECT_TRUE(f.at(171ms, frame(kC2U, 0, 600)).closes());
  EXPECT_FALSE(f.at(172ms, frame(kC2U, 0, 600)).closes());
}

TEST(RateLimitFilter, ByteThrottleWaitsUntilTheDebtIsPaid) {
  Limited f("{ client_to_upstream: { bytes: 1000/s, burst_bytes: 100 } }");
  // A frame over the burst passes and leaves 900 bytes owed: 0.9 s, and one byte more.
  auto v = f.at(0us, frame(kC2U, 2, 1000));
  ASSERT_EQ(v.kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_GE(v.until() - f.t0, 901ms);
  EXPECT_LT(v.until() - f.t0, 901ms + 1us);
}

TEST(RateLimitFilter, BothLimitsTheLaterWaitWins) {
  Limited f(
      "{ client_to_upstream: { messages: 10/s, burst_messages: 1, bytes: 100/s, "
      "burst_bytes: 100 } }");
  auto v = f.at(0us, frame(kC2U, 2, 300));  // 1 message (100 ms), 201 bytes owed (2.01 s)
  ASSERT_EQ(v.kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_GE(v.until() - f.t0, 2010ms);
  EXPECT_LT(v.until() - f.t0, 2010ms + 1us);
}

TEST(RateLimitFilter, ControlFramesAreNeverLimited) {
  Limited f(
      "{ client_to_upstream: { messages: 1/s, burst_messages: 1, bytes: 1/s, "
      "burst_bytes: 1, action: close } }");
  for (uint8_t opcode : {8, 9, 10}) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(f.at(0us, frame(kC2U, opcode, 125)).kind(), FrameVerdict::Kind::kContinue);
    }
  }
  // Nor do they spend tokens: the first data message still fits (an empty one, for bytes).
  EXPECT_FALSE(f.at(0us, frame(kC2U, 1, 0)).closes());
}

TEST(RateLimitFilter, EachDirectionHasItsOwnBucketsAndAction) {
  Limited f(
      "{ client_to_upstream: { messages: 10/s, burst_messages: 1, action: throttle }, "
      "upstream_to_client: { messages: 10/s, burst_messages: 2, action: close } }");
  EXPECT_EQ(f.at(0us, frame(kC2U, 1, 1)).kind(), FrameVerdict::Kind::kThrottle);
  EXPECT_EQ(f.at(0us, frame(kU2C, 1, 1)).kind(), FrameVerdict::Kind::kContinue);
  EXPECT_EQ(f.at(0us, frame(kU2C, 1, 1)).kind(), FrameVerdict::Kind::kContinue);
  EXPECT_TRUE(f.at(0us, frame(kU2C, 1, 1)).closes());
}

TEST(RateLimitFilter, ADirectionLeftOutIsNotLimited) {
  Limited f("{ client_to_upstream: { messages: 1/s, burst_messages: 1, action: close } }");
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(f.at(0us, frame(kU2C, 2, 1 << 20)).kind(), FrameVerdict::Kind::kContinue);
  }
}

TEST(RateLimitFilter, DefaultBurstIsOneSecondsWorthAndAtLeastOne) {
  Limited per_second("{ client_to_upstream: { messages: 50/s, action: close } }");
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(per_second.at(0us, frame(kC2U, 2, 1)).closes()) << i;
  EXPECT_TRUE(per_second.at(0us, frame(kC2U, 2, 1)).closes());
  Limited slow("{ client_to_upstream: { messages: 30/m, action: close } }");  // 0.5/s
  EXPECT_FALSE(slow.at(0us, frame(kC2U, 2, 1)).closes());
  EXPECT_TRUE(slow.at(1s, frame(kC2U, 2, 1)).closes());
  EXPECT_FALSE(slow.at(2s, frame(kC2U, 2, 1)).closes());
  Limited bytes("{ client_to_upstream: { bytes: 1MiB/s, action: close } }");
  EXPECT_FALSE(bytes.at(0us, frame(kC2U, 2, 1 << 20)).closes());
  EXPECT_TRUE(bytes.at(0us, frame(kC2U, 2, 1)).closes());
}

TEST(RateLimitFilter, TheIssueExampleLoads) {
  auto b = build(R"(
client_to_upstream: { messages: 100/s, bytes: 1MiB/s, burst_messages: 200, burst_bytes: 2MiB, action: throttle }
upstream_to_client: { messages: 1000/s, action: close }
)");
  ASSERT_TRUE(b.factory) << b.errors;
  const auto& config = static_cast<const RateLimitFilter&>(*b.factory);
  const auto& up = config.limits(kC2U);
  EXPECT_TRUE(up.enabled);
  EXPECT_DOUBLE_EQ(up.messages.rate, 100);
  EXPECT_DOUBLE_EQ(up.messages.burst, 200);
  EXPECT_DOUBLE_EQ(up.bytes.rate, 1 << 20);
  EXPECT_DOUBLE_EQ(up.bytes.burst, 2 << 20);
  EXPECT_EQ(up.action, RateLimitFilter::Action::kThrottle);
  const auto& down = config.limits(kU2C);
  EXPECT_DOUBLE_EQ(down.messages.rate, 1000);
  EXPECT_DOUBLE_EQ(down.messages.burst, 1000);
  EXPECT_DOUBLE_EQ(down.bytes.rate, 0);
  EXPECT_EQ(down.action, RateLimitFilter::Action::kClose);
}

TEST(RateLimitFilter, ConfigErrorsNameThePathAndLine) {
  EXPECT_EQ(build("{}").errors,
            "f.yaml:1:1: f.rate_limit: set client_to_upstream, upstream_to_client or both\n");
  EXPECT_EQ(build("{ client_to_upstream: { action: close } }").errors,
            "f.yaml:1:23: f.rate_limit.client_to_upstream: set messages, bytes or both\n");
  EXPECT_EQ(build("{ client_to_upstream: { messages: 0/s } }").errors,
            "f.yaml:1:35: f.rate_limit.client_to_upstream.messages: invalid rate \"0/s\" (a "
            "count or size per time, above 0: 100/s, 1MiB/s, 600/m)\n");
  EXPECT_EQ(build("{ client_to_upstream: { messages: 10/s, burst_messages: 0 } }").errors,
            "f.yaml:1:57: f.rate_limit.client_to_upstream.burst_messages: must be an integer "
            "from 1 to 1000000000, not \"0\"\n");
  EXPECT_EQ(build("{ client_to_upstream: { bytes: 10/s, burst_bytes: 0 } }").errors,
            "f.yaml:1:51: f.rate_limit.client_to_upstream.burst_bytes: must be at least 1 "
            "byte\n");
  EXPECT_EQ(build("{ upstream_to_client: { messages: 10/s, action: drop } }").errors,
            "f.yaml:1:49: f.rate_limit.upstream_to_client.action: must be throttle or close, "
            "not \"drop\"\n");
  EXPECT_EQ(build("{ upstream_to_client: { burst_bytes: 1KiB, messages: 1/s } }").errors,
            "f.yaml:1:38: f.rate_limit.upstream_to_client.burst_bytes: needs a rate: set bytes "
            "too\n");
  EXPECT_EQ(build("{ upstream_to_client: 100/s }").errors,
            "f.yaml:1:23: f.rate_limit.upstream_to_client: must be a map\n");
}

TEST(RateLimitFilter, UnknownKeysFailTheBuild) {
  auto b = build("{ client_to_upstream: { messages: 10/s, burst_mesages: 20 } }");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:41: f.rate_limit.client_to_upstream.burst_mesages: unknown key "
            "\"burst_mesages\" (did you mean \"burst_messages\"?)\n");
  auto top = build("{ both: { messages: 10/s } }");
  EXPECT_EQ(top.factory, nullptr);
  EXPECT_NE(top.errors.find("f.yaml:1:3: f.rate_limit.both: unknown key \"both\""),
            std::string::npos)
      << top.errors;
}

TEST(RateLimitFilter, ReportsEveryErrorAtOnce) {
  auto b = build(
      "{ client_to_upstream: { messages: x, action: slow }, "
      "upstream_to_client: { bytes: 1MiB/s, burst_bytes: big } }");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:35: f.rate_limit.client_to_upstream.messages: invalid rate \"x\" (a count "
            "or size per time, above 0: 100/s, 1MiB/s, 600/m)\n"
            "f.yaml:1:46: f.rate_limit.client_to_upstream.action: must be throttle or close, "
            "not \"slow\"\n"
            "f.yaml:1:104: f.rate_limit.upstream_to_client.burst_bytes: invalid size \"big\" (a "
            "number with an optional unit: B, KiB, MiB, GiB, KB, MB, GB)\n");
}

}  // namespace
}  // namespace wsgate::filters
