#include "filters/keepalive.h"

#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/registry.h"
#include "built_filter.h"

namespace wsgate::filters {
namespace {

using namespace std::chrono_literals;

Built build(const std::string& yaml) { return buildFilter("keepalive", yaml); }

// Records what the filter asks of its session.
class FakeControl final : public SessionControl {
 public:
  bool ping(Side side) override {
    pings.push_back(side);
    return accept_pings;
  }
  void goAway(uint16_t, std::string_view) override {}
  void abandon(Side side, std::string_view reason) override {
    abandoned.push_back(side);
    last_reason = std::string(reason);
  }
  void wakeAt(Clock::time_point when) override { wake = when; }

  std::vector<Side> pings;
  std::vector<Side> abandoned;
  std::string last_reason;
  Clock::time_point wake{};
  bool accept_pings = true;
};

FrameEvent frameFrom(Side side, uint8_t opcode, Clock::time_point now) {
  FrameEvent e{};
  e.direction = side == Side::kClient ? Direction::kClientToUpstream
                                      : Direction::kUpstreamToClient;
  e.opcode = opcode;
  e.fin = true;
  e.now = now;
  return e;
}

class KeepaliveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    built_ = build("{ interval: 20s, timeout: 10s }");
    ASSERT_TRUE(built_.factory) << built_.errors;
    SessionContext context;
    context.control = &control_;
    filter_ = built_.factory->newMessageFilter(context);
    ASSERT_TRUE(filter_);
    filter_->onStart(t0_);
  }

  Built built_;
  FakeControl control_;
  std::unique_ptr<MessageFilter> filter_;
  const Clock::time_point t0_ = Clock::time_point{} + 1000s;
};

TEST_F(KeepaliveTest, FirstWakeUpIsOneIntervalAfterTheStart) { EXPECT_EQ(control_.wake, t0_ + 20s); }

TEST_F(KeepaliveTest, PingsOnlyTheLegsThatWereSilentForAnInterval) {
  filter_->onFrame(frameFrom(Side::kClient, 1, t0_ + 15s));
  filter_->onTimer(t0_ + 20s);
  ASSERT_EQ(control_.pings, std::vector<Side>{Side::kUpstream});
  // Next: the client's interval ends at 35 s, before the upstream's answer is due at 30 s?
  // No: the answer is due first.
  EXPECT_EQ(control_.wake, t0_ + 30s);
}

TEST_F(KeepaliveTest, AnyFrameFromThePingedLegIsAnAnswer) {
  filter_->onTimer(t0_ + 20s);
  ASSERT_EQ(control_.pings.size(), 2u);
  filter_->onFrame(frameFrom(Side::kClient, 10, t0_ + 21s));    // its pong
  filter_->onFrame(frameFrom(Side::kUpstream, 2, t0_ + 22s));   // data
  filter_->onTimer(t0_ + 30s);
  EXPECT_TRUE(control_.abandoned.empty());
  EXPECT_EQ(control_.wake, t0_ + 41s);
}

TEST_F(KeepaliveTest, ALegSilentPastTheTimeoutIsAbandoned) {
  filter_->onFrame(frameFrom(Side::kUpstream, 2, t0_ + 19s));
  filter_->onTimer(t0_ + 20s);  // pings the client only
  ASSERT_EQ(control_.pings, std::vector<Side>{Side::kClient});
  filter_->onTimer(t0_ + 29s);
  EXPECT_TRUE(control_.abandoned.empty());
  filter_->onTimer(t0_ + 30s);
  EXPECT_EQ(control_.abandoned, std::vector<Side>{Side::kClient});
  EXPECT_NE(control_.last_reason.find("client"), std::string::npos);
}

TEST_F(KeepaliveTest, AClosingLegThatTakesNoPingIsLookedAtAgainAfterAnInterval) {
  control_.accept_pings = false;
  filter_->onTimer(t0_ + 20s);
  EXPECT_EQ(control_.wake, t0_ + 40s);  // not at once: no busy loop
  EXPECT_TRUE(control_.abandoned.empty());
}

TEST(KeepaliveConfig, SidesAndValidation) {
  auto one = build("{ interval: 1s, timeout: 500ms, sides: upstream }");
  ASSERT_TRUE(one.factory) << one.errors;
  const auto& settings = static_cast<const KeepaliveFilter&>(*one.factory).settings();
  EXPECT_EQ(settings.interval, 1s);
  EXPECT_EQ(settings.timeout, 500ms);
  EXPECT_FALSE(settings.sides[0]);
  EXPECT_TRUE(settings.sides[1]);
  EXPECT_TRUE(build("{}").factory);  // defaults: 20s, 10s

  auto bad = build("{ interval: 0s, timeout: x, sides: left, every: 1s }");
  EXPECT_FALSE(bad.factory);
  EXPECT_NE(bad.errors.find("f.keepalive"), std::string::npos) << bad.errors;
  auto zero = build("{ interval: 0s, sides: left }");
  EXPECT_FALSE(zero.factory);
  EXPECT_NE(zero.errors.find("f.keepalive.interval"), std::string::npos) << zero.errors;
  EXPECT_NE(zero.errors.find("f.keepalive.sides"), std::string::npos) << zero.errors;
}

}  // namespace
}  // namespace wsgate::filters
