#include "filters/message_size.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/registry.h"
#include "built_filter.h"

namespace wsgate::filters {
namespace {

Built build(const std::string& yaml) { return buildFilter("message_size", yaml); }

constexpr Direction kC2U = Direction::kClientToUpstream;
constexpr Direction kU2C = Direction::kUpstreamToClient;

FrameEvent frame(Direction d, uint8_t opcode, uint64_t length, uint64_t message) {
  return {d, opcode, true, false, length, message};
}

TEST(MessageSizeFilter, IsAMessageFilterOnly) {
  auto b = build("{ max_frame_bytes: 100 }");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->name(), "message_size");
  EXPECT_EQ(b.factory->handshakeFilter(), nullptr);
  auto first = b.factory->newMessageFilter({});
  auto second = b.factory->newMessageFilter({});
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_NE(first.get(), second.get());  // one per session
}

TEST(MessageSizeFilter, ClosesWith1009OverFrameOrMessageLimit) {
  auto b = build("{ max_frame_bytes: 100, max_message_bytes: 1KiB }");
  ASSERT_TRUE(b.factory) << b.errors;
  auto f = b.factory->newMessageFilter({});
  EXPECT_FALSE(f->onFrame(frame(kC2U, 2, 100, 100)).closes());
  auto big_frame = f->onFrame(frame(kC2U, 2, 101, 101));
  ASSERT_TRUE(big_frame.closes());
  EXPECT_EQ(big_frame.code(), 1009);
  EXPECT_EQ(big_frame.reason(), "frame too big");
  EXPECT_EQ(big_frame.label(), "frame_too_big");
  // A fragmented message: each frame is small, the sum is not.
  EXPECT_FALSE(f->onFrame(frame(kC2U, 1, 100, 100)).closes());
  EXPECT_FALSE(f->onFrame(frame(kC2U, 0, 100, 1024)).closes());
  auto big_message = f->onFrame(frame(kC2U, 0, 100, 1025));
  ASSERT_TRUE(big_message.closes());
  EXPECT_EQ(big_message.code(), 1009);
  EXPECT_EQ(big_message.reason(), "message too big");
}

TEST(MessageSizeFilter, FrameLimitIsCheckedBeforeMessageLimit) {
  auto b = build("{ max_frame_bytes: 10, max_message_bytes: 10 }");
  ASSERT_TRUE(b.factory) << b.errors;
  auto verdict = b.factory->newMessageFilter({})->onFrame(frame(kC2U, 2, 11, 11));
  ASSERT_TRUE(verdict.closes());
  EXPECT_EQ(verdict.reason(), "frame too big");
}

TEST(MessageSizeFilter, OnlyDataFramesAreLimited) {
  auto b = build("{ max_frame_bytes: 1, max_message_bytes: 1 }");
  ASSERT_TRUE(b.factory) << b.errors;
  auto f = b.factory->newMessageFilter({});
  for (uint8_t opcode : {8, 9, 10}) EXPECT_FALSE(f->onFrame(frame(kC2U, opcode, 125, 0)).closes());
  for (uint8_t opcode : {0, 1, 2}) EXPECT_TRUE(f->onFrame(frame(kC2U, opcode, 2, 2)).closes());
}

TEST(MessageSizeFilter, EachLimitAloneLeavesTheOtherUnbounded) {
  auto frames_only = build("{ max_frame_bytes: 10 }");
  ASSERT_TRUE(frames_only.factory) << frames_only.errors;
  EXPECT_FALSE(frames_only.factory->newMessageFilter({})->onFrame(frame(kC2U, 0, 10, 1u << 30)).closes());
  auto messages_only = build("{ max_message_bytes: 1MiB }");
  ASSERT_TRUE(messages_only.factory) << messages_only.errors;
  auto f = messages_only.factory->newMessageFilter({});
  EXPECT_FALSE(f->onFrame(frame(kC2U, 2, 1u << 20, 1u << 20)).closes());
  EXPECT_TRUE(f->onFrame(frame(kC2U, 2, (1u << 20) + 1, (1u << 20) + 1)).closes());
}

TEST(MessageSizeFilter, DirectionLimitsWhereItApplies) {
  struct Case {
    const char* direction;
    bool limits_c2u;
    bool limits_u2c;
  };
  for (const Case& c : {Case{"both", true, true}, Case{"client_to_upstream", true, false},
                        Case{"upstream_to_client", false, true}}) {
    auto b = build(std::string("{ max_message_bytes: 10, direction: ") + c.direction + " }");
    ASSERT_TRUE(b.factory) << b.errors;
    auto f = b.factory->newMessageFilter({});
    EXPECT_EQ(f->onFrame(frame(kC2U, 1, 11, 11)).closes(), c.limits_c2u) << c.direction;
    EXPECT_EQ(f->onFrame(frame(kU2C, 1, 11, 11)).closes(), c.limits_u2c) << c.direction;
  }
  auto by_default = build("{ max_message_bytes: 10 }");
  auto f = by_default.factory->newMessageFilter({});
  EXPECT_TRUE(f->onFrame(frame(kC2U, 1, 11, 11)).closes());
  EXPECT_TRUE(f->onFrame(frame(kU2C, 1, 11, 11)).closes());
}

TEST(MessageSizeFilter, ConfigErrors) {
  EXPECT_EQ(build("{}").errors,
            "f.yaml:1:1: f.message_size: set max_frame_bytes, max_message_bytes or both\n");
  EXPECT_EQ(build("{ max_message_bytes: 0 }").errors,
            "f.yaml:1:22: f.message_size.max_message_bytes: must be greater than 0 (omit the "
            "key for no limit)\n");
  EXPECT_EQ(build("{ max_message_bytes: 1, direction: up }").errors,
            "f.yaml:1:36: f.message_size.direction: must be both, client_to_upstream or "
            "upstream_to_client, not \"up\"\n");
  EXPECT_EQ(build("{ max_frame_bytes: lots }").errors,
            "f.yaml:1:20: f.message_size.max_frame_bytes: invalid size \"lots\" (a number with "
            "an optional unit: B, KiB, MiB, GiB, KB, MB, GB)\n");
}

TEST(MessageSizeFilter, UnknownKeyFailsTheBuild) {
  auto b = build("{ max_frame_bytes: 10, max_mesage_bytes: 10 }");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:24: f.message_size.max_mesage_bytes: unknown key \"max_mesage_bytes\" (did "
            "you mean \"max_message_bytes\"?)\n");
}

TEST(MessageSizeFilter, ReportsEveryErrorAtOnce) {
  auto b = build("{ max_frame_bytes: 0, max_message_bytes: x, direction: sideways }");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:20: f.message_size.max_frame_bytes: must be greater than 0 (omit the key "
            "for no limit)\n"
            "f.yaml:1:42: f.message_size.max_message_bytes: invalid size \"x\" (a number with an "
            "optional unit: B, KiB, MiB, GiB, KB, MB, GB)\n"
            "f.yaml:1:56: f.message_size.direction: must be both, client_to_upstream or "
            "upstream_to_client, not \"sideways\"\n");
}

}  // namespace
}  // namespace wsgate::filters
