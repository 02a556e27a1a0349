#include "filters/max_duration.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <vector>

#include "config/diagnostics.h"
#include "filters/registry.h"
#include "built_filter.h"

namespace wsgate::filters {
namespace {

using namespace std::chrono_literals;

Built build(const std::string& yaml) { return buildFilter("max_duration", yaml); }

// What the filter asks of its session.
class FakeControl final : public SessionControl {
 public:
  bool ping(Side) override { return false; }
  void goAway(uint16_t code, std::string_view reason) override {
    go_away_code = code;
    go_away_reason = std::string(reason);
  }
  void abandon(Side, std::string_view) override {}
  void wakeAt(Clock::time_point when) override { wake = when; }

  Clock::time_point wake{};
  uint16_t go_away_code = 0;
  std::string go_away_reason;
};

TEST(MaxDurationFilter, IsAMessageFilterOnly) {
  auto b = build("{ max: 1h }");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->name(), "max_duration");
  EXPECT_EQ(b.factory->handshakeFilter(), nullptr);
  EXPECT_TRUE(b.factory->newMessageFilter({}));
}

TEST(MaxDurationFilter, WakesAtMaxThenEndsTheSessionWith1001BothWays) {
  auto b = build("{ max: 90s }");
  ASSERT_TRUE(b.factory) << b.errors;
  FakeControl control;
  const auto started = Clock::now();
  auto f = b.factory->newMessageFilter({"r", "127.0.0.1", started, &control});
  f->onStart(started);
  EXPECT_EQ(control.wake, started + 90s);  // no jitter by default
  // Frames change nothing, control or data.
  for (uint8_t opcode : {1, 2, 0, 8, 9, 10}) {
    EXPECT_EQ(f->onFrame({Direction::kClientToUpstream, opcode, true, false, 10, 10}).kind(),
              FrameVerdict::Kind::kContinue);
  }
  EXPECT_EQ(control.go_away_code, 0);
  f->onTimer(started + 90s);
  EXPECT_EQ(control.go_away_code, 1001);
  EXPECT_EQ(control.go_away_reason, "session too old");
}

TEST(MaxDurationFilter, AnEarlyWakeUpWaitsOn) {
  auto b = build("{ max: 10s }");
  ASSERT_TRUE(b.factory) << b.errors;
  FakeControl control;
  const auto started = Clock::now();
  auto f = b.factory->newMessageFilter({"r", "127.0.0.1", started, &control});
  f->onStart(started);
  control.wake = {};
  f->onTimer(started + 9s);
  EXPECT_EQ(control.go_away_code, 0);
  EXPECT_EQ(control.wake, started + 10s);
}

TEST(MaxDurationFilter, DeadlineSpansMaxPlusOrMinusJitter) {
  auto b = build("{ max: 1h, jitter: 10% }");
  ASSERT_TRUE(b.factory) << b.errors;
  const auto& config = static_cast<const MaxDurationFilter&>(*b.factory);
  const auto t0 = Clock::now();
  // Within a microsecond: the share is computed in floating point.
  auto near = [&](Clock::time_point at, Clock::duration want) {
    return std::chrono::abs(at - t0 - want) < 1us;
  };
  EXPECT_TRUE(near(config.deadline(t0, 0.0), 54min));
  EXPECT_TRUE(near(config.deadline(t0, 0.5), 60min));
  EXPECT_TRUE(near(config.deadline(t0, 1.0), 66min));
}

TEST(MaxDurationFilter, SessionsDeadlinesAreWithinTheJitterAndSpreadOverIt) {
  auto b = build("{ max: 100s, jitter: 20% }");
  ASSERT_TRUE(b.factory) << b.errors;
  const auto started = Clock::now();
  std::vector<Clock::duration> lifetimes;
  for (int i = 0; i < 1000; ++i) {
    FakeControl control;
    auto f = b.factory->newMessageFilter({"r", "127.0.0.1", started, &control});
    f->onStart(started);
    lifetimes.push_back(control.wake - started);
  }
  const auto [low, high] = std::minmax_element(lifetimes.begin(), lifetimes.end());
  EXPECT_GE(*low, 80s);
  EXPECT_LE(*high, 120s);
  // Uniform over 40 s: 1,000 draws reach within 2 s of each end (a miss has odds of 0.95^1000).
  EXPECT_LT(*low, 82s);
  EXPECT_GT(*high, 118s);
  // And they are spread, not lumped: each fifth of the range holds a fair share.
  std::array<int, 5> buckets{};
  for (auto d : lifetimes) {
    const auto index = std::clamp<long>((d - 80s) / 8s, 0, 4);
    ++buckets[static_cast<size_t>(index)];
  }
  for (int count : buckets) EXPECT_GT(count, 120) << "a fifth of the range holds ~200";
}

TEST(MaxDurationFilter, JitterZeroIsExact) {
  auto b = build("{ max: 2s, jitter: 0% }");
  ASSERT_TRUE(b.factory) << b.errors;
  const auto started = Clock::now();
  for (int i = 0; i < 20; ++i) {
    FakeControl control;
    auto f = b.factory->newMessageFilter({"r", "127.0.0.1", started, &control});
    f->onStart(started);
    EXPECT_EQ(control.wake, started + 2s);
  }
}

TEST(MaxDurationFilter, ConfigErrorsNameThePathAndLine) {
  EXPECT_EQ(build("{}").errors, "f.yaml:1:1: f.max_duration: set max (e.g. max: 1h)\n");
  EXPECT_EQ(build("{ max: soon }").errors,
            "f.yaml:1:8: f.max_duration.max: invalid duration \"soon\" (a number with a unit: "
            "ms, s, m or h, e.g. 30s)\n");
  EXPECT_EQ(build("{ max: 1h, jitter: 60% }").errors,
            "f.yaml:1:20: f.max_duration.jitter: must be a percentage from 0% to 50%, not "
            "\"60%\"\n");
  EXPECT_EQ(build("{ max: 1h, jitter: 0.1 }").errors,
            "f.yaml:1:20: f.max_duration.jitter: must be a percentage from 0% to 50%, not "
            "\"0.1\"\n");
  EXPECT_EQ(build("{ max: 1h, jitter: -5% }").errors,
            "f.yaml:1:20: f.max_duration.jitter: must be a percentage from 0% to 50%, not "
            "\"-5%\"\n");
  EXPECT_EQ(build("{ max: 0s }").errors,
            "f.yaml:1:8: f.max_duration.max: must be from 1ms to 8760h (a year), not \"0s\"\n");
  EXPECT_EQ(build("{ max: 9000h }").errors,
            "f.yaml:1:8: f.max_duration.max: must be from 1ms to 8760h (a year), not "
            "\"9000h\"\n");
  EXPECT_EQ(build("max: 1h").errors, "");
  EXPECT_EQ(build("1h").errors, "f.yaml:1:1: f.max_duration: must be a map\n");
}

TEST(MaxDurationFilter, UnknownKeyFailsTheBuild) {
  auto b = build("{ max: 1h, jiter: 10% }");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:12: f.max_duration.jiter: unknown key \"jiter\" (did you mean "
            "\"jitter\"?)\n");
}

}  // namespace
}  // namespace wsgate::filters
