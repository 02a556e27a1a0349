#include "codec/frame_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wsgate::gateway {
namespace {

std::vector<uint8_t> encode(const FrameHeader& h) {
  std::vector<uint8_t> out(kMaxFrameHeaderSize);
  out.resize(encodeHeader(h, out.data()));
  return out;
}

FrameHeader header(uint8_t op, uint64_t length, bool fin = true, bool masked = false) {
  FrameHeader h;
  h.fin = fin;
  h.opcode = op;
  h.payload_length = length;
  h.masked = masked;
  if (masked) h.mask_key = {0x11, 0x22, 0x33, 0x44};
  return h;
}

void expectSame(const FrameHeader& a, const FrameHeader& b) {
  EXPECT_EQ(a.fin, b.fin);
  EXPECT_EQ(a.rsv1, b.rsv1);
  EXPECT_EQ(a.opcode, b.opcode);
  EXPECT_EQ(a.masked, b.masked);
  EXPECT_EQ(a.payload_length, b.payload_length);
  if (a.masked) {
    EXPECT_EQ(a.mask_key, b.mask_key);
  }
}

struct LengthCase {
  uint64_t length;
  size_t header_size;
};

class FrameLengthEncoding : public ::testing::TestWithParam<LengthCase> {};

TEST_P(FrameLengthEncoding, RoundTripsEachLengthEncoding) {
  for (bool masked : {false, true}) {
    FrameHeader h = header(opcode::kBinary, GetParam().length, true, masked);
    auto bytes = encode(h);
    EXPECT_EQ(bytes.size(), GetParam().header_size + (masked ? 4 : 0));
    FrameHeaderParser parser;
    EXPECT_EQ(parser.feed(bytes.data(), bytes.size()), bytes.size());
    ASSERT_TRUE(parser.complete());
    EXPECT_FALSE(parser.invalid());
    expectSame(parser.header(), h);
    EXPECT_EQ(parser.header().size, bytes.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Lengths, FrameLengthEncoding,
                         ::testing::Values(LengthCase{0, 2}, LengthCase{125, 2},
                                           LengthCase{126, 4}, LengthCase{65535, 4},
                                           LengthCase{65536, 10},
                                           LengthCase{16ull * 1024 * 1024, 10},
                                           LengthCase{(1ull << 63) - 1, 10}));

TEST(FrameHeaderParser, CompletesAtEverySplitPointAcrossTwoReads) {
  for (uint64_t length : {5ull, 300ull, 70000ull}) {
    FrameHeader h = header(opcode::kText, length, false, true);
    auto bytes = encode(h);
    bytes.push_back(0xAB);  // first payload byte: must not be consumed by the parser
    for (size_t split = 0; split <= bytes.size() - 1; ++split) {
      FrameHeaderParser parser;
      size_t used = parser.feed(bytes.data(), split);
      EXPECT_EQ(used, split);
      EXPECT_EQ(parser.complete(), split == bytes.size() - 1);
      used += parser.feed(bytes.data() + split, bytes.size() - split);
      EXPECT_EQ(used, bytes.size() - 1) << "split " << split;
      ASSERT_TRUE(parser.complete()) << "split " << split;
      expectSame(parser.header(), h);
      // The raw bytes are kept so that a split header can be forwarded whole.
      EXPECT_EQ(std::vector<uint8_t>(parser.raw().begin(), parser.raw().end()),
                std::vector<uint8_t>(bytes.begin(), bytes.end() - 1));
    }
  }
}

TEST(FrameHeaderParser, CompletesFedOneByteAtATime) {
  FrameHeader h = header(opcode::kBinary, 1u << 20, true, true);
  auto bytes = encode(h);
  FrameHeaderParser parser;
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_FALSE(parser.complete());
    EXPECT_EQ(parser.feed(&bytes[i], 1), 1u);
  }
  ASSERT_TRUE(parser.complete());
  expectSame(parser.header(), h);
}

TEST(FrameHeaderParser, FlagsLengthWithTopBitSetAsInvalid) {
  const uint8_t bytes[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
  FrameHeaderParser parser;
  parser.feed(bytes, sizeof bytes);
  ASSERT_TRUE(parser.complete());
  EXPECT_TRUE(parser.invalid());
}

TEST(FrameHeaderParser, FlagsLengthNotWrittenWithTheFewestBytesAsInvalid) {
  struct Case {
    std::vector<uint8_t> bytes;
    bool invalid;
  };
  const std::vector<Case> cases = {
      {{0x81, 126, 0, 5}, true},                        // 5 fits in 7 bits
      {{0x81, 126, 0, 125}, true},
      {{0x81, 126, 0, 126}, false},                     // the smallest 16-bit length
      {{0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, true},  // 65535 fits in 16 bits
      {{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, false},     // 65536
  };
  for (const Case& c : cases) {
    FrameHeaderParser parser;
    parser.feed(c.bytes.data(), c.bytes.size());
    ASSERT_TRUE(parser.complete());
    EXPECT_EQ(parser.invalid(), c.invalid) << int(c.bytes[1]) << " " << int(c.bytes.back());
  }
}

TEST(FrameHeaderParser, DecodesReservedBitsAndResets) {
  const uint8_t bytes[] = {0xF1, 0x00};
  FrameHeaderParser parser;
  parser.feed(bytes, 2);
  ASSERT_TRUE(parser.complete());
  EXPECT_TRUE(parser.header().rsv1);
  EXPECT_TRUE(parser.header().rsv2);
  EXPECT_TRUE(parser.header().rsv3);
  parser.reset();
  EXPECT_FALSE(parser.complete());
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(Masking, MaskingTwiceRestoresPayloadFromAnyOffset) {
  std::string text = "Hello, WebSocket payload";
  std::vector<uint8_t> data(text.begin(), text.end());
  const std::array<uint8_t, 4> key{0x37, 0xfa, 0x21, 0x3d};
  applyMask(data.data(), data.size(), key, 0);
  EXPECT_NE(std::string(data.begin(), data.end()), text);
  // Unmask in two pieces split at an odd offset.
  applyMask(data.data(), 7, key, 0);
  applyMask(data.data() + 7, data.size() - 7, key, 7);
  EXPECT_EQ(std::string(data.begin(), data.end()), text);
}

TEST(Masking, WordAtATimeMatchesByteAtATimeAtEveryOffsetAndLength) {
  const std::array<uint8_t, 4> key = {0x37, 0xfa, 0x21, 0x3d};
  std::vector<uint8_t> source(67);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<uint8_t>(i * 7 + 1);
  for (uint64_t offset = 0; offset < 9; ++offset) {
    for (size_t size = 0; size <= source.size(); ++size) {
      std::vector<uint8_t> fast(source.begin(), source.begin() + size);
      applyMask(fast.data(), fast.size(), key, offset);
      for (size_t i = 0; i < size; ++i) {
        ASSERT_EQ(fast[i], source[i] ^ key[(offset + i) & 3]) << offset << " " << size << " " << i;
      }
    }
  }
}

TEST(Masking, MatchesRfcExample) {
  // RFC 6455 §5.7: a masked "Hello".
  const uint8_t frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  FrameHeaderParser parser;
  EXPECT_EQ(parser.feed(frame, sizeof frame), 6u);
  ASSERT_TRUE(parser.complete());
  std::vector<uint8_t> payload(frame + 6, frame + sizeof frame);
  applyMask(payload.data(), payload.size(), parser.header().mask_key, 0);
  EXPECT_EQ(std::string(payload.begin(), payload.end()), "Hello");
}

TEST(CloseFrame, EncodesCodeAndReasonUnmaskedTowardClients) {
  ControlFrame frame = makeCloseFrame(1009, "message too big", false);
  FrameHeaderParser parser;
  const size_t used = parser.feed(frame.bytes.data(), frame.size);
  ASSERT_TRUE(parser.complete());
  EXPECT_EQ(parser.header().opcode, opcode::kClose);
  EXPECT_TRUE(parser.header().fin);
  EXPECT_FALSE(parser.header().masked);
  EXPECT_EQ(parser.header().payload_length, 2 + std::string("message too big").size());
  std::span<const uint8_t> payload{frame.bytes.data() + used, frame.size - used};
  EXPECT_EQ(closeCode(payload), 1009);
  EXPECT_EQ(std::string(payload.begin() + 2, payload.end()), "message too big");
}

TEST(CloseFrame, MasksTowardServers) {
  ControlFrame frame = makeCloseFrame(1001, "going away", true);
  FrameHeaderParser parser;
  const size_t used = parser.feed(frame.bytes.data(), frame.size);
  ASSERT_TRUE(parser.header().masked);
  std::vector<uint8_t> payload(frame.bytes.data() + used, frame.bytes.data() + frame.size);
  applyMask(payload.data(), payload.size(), parser.header().mask_key, 0);
  EXPECT_EQ(closeCode(payload), 1001);
  EXPECT_EQ(std::string(payload.begin() + 2, payload.end()), "going away");
}

TEST(CloseFrame, CutsLongReasonOnUtf8BoundaryWithinControlLimit) {
  std::string reason;
  for (int i = 0; i < 100; ++i) reason += "\xc3\xa9";  // 200 bytes of 'é'
  ControlFrame frame = makeCloseFrame(1008, reason, false);
  FrameHeaderParser parser;
  const size_t used = parser.feed(frame.bytes.data(), frame.size);
  EXPECT_LE(parser.header().payload_length, kMaxControlPayload);
  EXPECT_EQ((parser.header().payload_length - 2) % 2, 0u);  // whole 2-byte characters only
  EXPECT_EQ(frame.size, used + parser.header().payload_length);
}

TEST(CloseFrame, EmptyPayloadMeansNoStatus) { EXPECT_EQ(closeCode({}), 1005); }

TEST(FrameSequencer, AcceptsFragmentedMessageWithControlFramesBetween) {
  FrameSequencer seq(true, false);
  EXPECT_EQ(seq.check(header(opcode::kText, 10, false, true)), nullptr);
  EXPECT_FALSE(seq.messageEnded());
  EXPECT_EQ(seq.check(header(opcode::kPing, 4, true, true)), nullptr);
  EXPECT_EQ(seq.check(header(opcode::kContinuation, 20, false, true)), nullptr);
  EXPECT_EQ(seq.messageLength(), 30u);
  EXPECT_EQ(seq.check(header(opcode::kPong, 0, true, true)), nullptr);
  EXPECT_EQ(seq.check(header(opcode::kContinuation, 5, true, true)), nullptr);
  EXPECT_TRUE(seq.messageEnded());
  EXPECT_EQ(seq.messageLength(), 35u);
  EXPECT_EQ(seq.check(header(opcode::kBinary, 7, true, true)), nullptr);
  EXPECT_EQ(seq.messageLength(), 7u);
}

TEST(FrameSequencer, RejectsEachProtocolViolation) {
  {
    FrameSequencer seq(true, false);
    EXPECT_STREQ(seq.check(header(opcode::kText, 1, true, false)), "client frame not masked");
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(opcode::kText, 1, true, true)), "server frame masked");
  }
  for (int bit = 0; bit < 3; ++bit) {
    FrameSequencer seq(false, false);
    FrameHeader h = header(opcode::kText, 1);
    (bit == 0 ? h.rsv1 : bit == 1 ? h.rsv2 : h.rsv3) = true;
    EXPECT_STREQ(seq.check(h), "reserved bit set") << bit;
  }
  for (uint8_t op : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(op, 0)), "reserved opcode") << int(op);
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(opcode::kPing, 126)), "control frame over 125 bytes");
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(opcode::kPing, 1, false)), "fragmented control frame");
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(opcode::kContinuation, 1)),
                 "continuation frame without a message");
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_EQ(seq.check(header(opcode::kText, 1, false)), nullptr);
    EXPECT_STREQ(seq.check(header(opcode::kBinary, 1)), "new message inside a fragmented message");
  }
  {
    FrameSequencer seq(false, false);
    EXPECT_STREQ(seq.check(header(opcode::kClose, 1)), "close frame with 1-byte payload");
  }
}

TEST(FrameSequencer, AllowsRsv1OnFirstFrameOnlyWhenDeflateNegotiated) {
  FrameSequencer seq(false, true);
  FrameHeader first = header(opcode::kText, 10, false);
  first.rsv1 = true;
  EXPECT_EQ(seq.check(first), nullptr);
  EXPECT_TRUE(seq.compressed());
  FrameHeader next = header(opcode::kContinuation, 10, true);
  next.rsv1 = true;
  EXPECT_STREQ(seq.check(next), "reserved bit set");
  FrameSequencer ping_seq(false, true);
  FrameHeader ping = header(opcode::kPing, 0);
  ping.rsv1 = true;
  EXPECT_STREQ(ping_seq.check(ping), "reserved bit set");
}

}  // namespace
}  // namespace wsgate::gateway
