#include "filters/utf8.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/registry.h"

namespace wsgate::filters {
namespace {

std::shared_ptr<const FilterFactory> build(const std::string& yaml, std::string* errors = nullptr) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build("utf8", YAML::Load(yaml), "f.utf8", diags);
  if (errors) *errors = diags.format();
  return std::static_pointer_cast<const FilterFactory>(built);
}

FrameEvent frame(uint8_t opcode, bool fin, uint64_t length,
                 Direction d = Direction::kClientToUpstream) {
  FrameEvent e{};
  e.direction = d;
  e.opcode = opcode;
  e.fin = fin;
  e.payload_length = length;
  return e;
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Utf8Filter, AsksForTextAndCloseReasonsOnly) {
  auto factory = build("{}");
  ASSERT_TRUE(factory);
  EXPECT_TRUE(factory->readsPayload());
  auto f = factory->newMessageFilter({});
  using Kind = FrameVerdict::Kind;
  EXPECT_EQ(f->onFrame(frame(2, true, 10)).kind(), Kind::kContinue);   // binary
  EXPECT_EQ(f->onFrame(frame(0, true, 10)).kind(), Kind::kContinue);   // of the binary
  EXPECT_EQ(f->onFrame(frame(9, true, 4)).kind(), Kind::kContinue);    // ping
  EXPECT_EQ(f->onFrame(frame(8, true, 2)).kind(), Kind::kContinue);    // close, code only
  EXPECT_EQ(f->onFrame(frame(8, true, 5)).kind(), Kind::kInspect);     // close with a reason
  EXPECT_EQ(f->onFrame(frame(1, false, 3)).kind(), Kind::kInspect);    // text
  EXPECT_EQ(f->onFrame(frame(0, true, 3)).kind(), Kind::kInspect);     // of the text
}

TEST(Utf8Filter, CodePointsSplitAnywhereAcrossPiecesAndFrames) {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
  for (size_t cut = 1; cut < text.size(); ++cut) {
    auto f = build("{}")->newMessageFilter({});
    const auto first = frame(1, false, cut);
    ASSERT_EQ(f->onFrame(first).kind(), FrameVerdict::Kind::kInspect);
    for (size_t i = 0; i < cut; ++i) {  // one byte per piece
      EXPECT_FALSE(f->onPayload(first, bytes(text.substr(i, 1)), i + 1 == cut).closes()) << cut;
    }
    const auto last = frame(0, true, text.size() - cut);
    ASSERT_EQ(f->onFrame(last).kind(), FrameVerdict::Kind::kInspect);
    EXPECT_FALSE(f->onPayload(last, bytes(text.substr(cut)), true).closes()) << cut;
  }
}

TEST(Utf8Filter, InvalidTextAndTruncatedEndsClose1007) {
  for (const std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80", "\xFF"}) {
    auto f = build("{}")->newMessageFilter({});
    const auto e = frame(1, true, bad.size());
    f->onFrame(e);
    const auto verdict = f->onPayload(e, bytes(bad), true);
    ASSERT_TRUE(verdict.closes());
    EXPECT_EQ(verdict.code(), 1007);
    EXPECT_EQ(verdict.label(), "invalid_utf8");
  }
  // Valid so far, but the message ends inside a sequence.
  auto f = build("{}")->newMessageFilter({});
  const auto e = frame(1, true, 2);
  f->onFrame(e);
  EXPECT_TRUE(f->onPayload(e, bytes("\xE2\x82"), true).closes());
  // A non-final frame may end inside a sequence.
  auto g = build("{}")->newMessageFilter({});
  const auto part = frame(1, false, 2);
  g->onFrame(part);
  EXPECT_FALSE(g->onPayload(part, bytes("\xE2\x82"), true).closes());
}

TEST(Utf8Filter, CloseReasonsSkipTheCodeEvenWhenItIsSplit) {
  auto f = build("{}")->newMessageFilter({});
  const std::string payload = std::string("\x03\xE8", 2) + "bient\xC3\xB4t";
  const auto e = frame(8, true, payload.size());
  ASSERT_EQ(f->onFrame(e).kind(), FrameVerdict::Kind::kInspect);
  EXPECT_FALSE(f->onPayload(e, bytes(payload.substr(0, 1)), false).closes());
  EXPECT_FALSE(f->onPayload(e, bytes(payload.substr(1)), true).closes());
  const std::string bad = std::string("\x03\xE8", 2) + "\xC0\xAF";
  const auto b = frame(8, true, bad.size());
  f->onFrame(b);
  EXPECT_TRUE(f->onPayload(b, bytes(bad), true).closes());
}

TEST(Utf8Filter, DirectionsAndValidation) {
  auto up = build("{ direction: client_to_upstream }")->newMessageFilter({});
  EXPECT_EQ(up->onFrame(frame(1, true, 1, Direction::kUpstreamToClient)).kind(),
            FrameVerdict::Kind::kContinue);
  EXPECT_EQ(up->onFrame(frame(1, true, 1)).kind(), FrameVerdict::Kind::kInspect);
  EXPECT_TRUE(build("~"));  // `utf8:` with no value
  std::string errors;
  EXPECT_FALSE(build("{ direction: sideways }", &errors));
  EXPECT_NE(errors.find("f.utf8.direction"), std::string::npos) << errors;
  EXPECT_FALSE(build("{ strict: true }", &errors));
  EXPECT_NE(errors.find("strict"), std::string::npos) << errors;
}

}  // namespace
}  // namespace wsgate::filters
