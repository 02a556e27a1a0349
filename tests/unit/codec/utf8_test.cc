#include "codec/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wsgate::gateway {
namespace {

std::span<const uint8_t> bytesOf(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// A decoder written from RFC 3629's definition, one code point at a time: the reference the
// validator is held to.
bool referenceValid(const std::vector<uint8_t>& s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = s[i];
    size_t length = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      length = 1;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      length = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      length = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      length = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + length > s.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

TEST(Utf8Test, AgreesWithTheReferenceOnEverySequenceOfUpToThreeBytes) {
  std::vector<uint8_t> s;
  for (uint32_t a = 0; a < 256; ++a) {
    s = {static_cast<uint8_t>(a)};
    ASSERT_EQ(isValidUtf8(s), referenceValid(s)) << a;
    for (uint32_t b = 0; b < 256; ++b) {
      s = {static_cast<uint8_t>(a), static_cast<uint8_t>(b)};
      ASSERT_EQ(isValidUtf8(s), referenceValid(s)) << a << " " << b;
      if (a < 0xE0 || a > 0xF4) continue;  // three-byte sequences worth walking
      for (uint32_t c = 0; c < 256; ++c) {
        s = {static_cast<uint8_t>(a), static_cast<uint8_t>(b), static_cast<uint8_t>(c)};
        ASSERT_EQ(isValidUtf8(s), referenceValid(s)) << a << " " << b << " " << c;
      }
    }
  }
}

TEST(Utf8Test, AgreesWithTheReferenceOnFourByteSequencesAroundEveryBound) {
  const uint8_t tails[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  for (uint32_t a = 0xEF; a <= 0xF8; ++a) {
    for (uint8_t b : tails) {
      for (uint8_t c : tails) {
        for (uint8_t d : tails) {
          const std::vector<uint8_t> s = {static_cast<uint8_t>(a), b, c, d};
          ASSERT_EQ(isValidUtf8(s), referenceValid(s)) << a << " " << +b << " " << +c << " " << +d;
        }
      }
    }
  }
}

TEST(Utf8Test, ValidTextSplitAtEveryByteIsValidAndCompleteOnlyAtCodePointEnds) {
  const std::string text = "héllo wsgate ✓ 🌍 \xF4\x8F\xBF\xBF end";  // up to U+10FFFF
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    Utf8Validator validator;
    ASSERT_TRUE(validator.feed(bytesOf(text.substr(0, cut)))) << cut;
    const auto next = static_cast<uint8_t>(cut < text.size() ? text[cut] : 0);
    // Between code points exactly when the next byte is not a continuation byte.
    EXPECT_EQ(validator.complete(), cut == text.size() || (next & 0xC0) != 0x80) << cut;
    ASSERT_TRUE(validator.feed(bytesOf(text.substr(cut)))) << cut;
    EXPECT_TRUE(validator.complete()) << cut;
  }
}

TEST(Utf8Test, OverlongsSurrogatesAndOutOfRangeAreRejectedWhereverTheyAreSplit) {
  const std::vector<std::string> invalid = {
      "\xC0\x80",          // overlong U+0000
      "\xC1\xBF",          // overlong U+007F
      "\xE0\x80\xAF",      // overlong '/'
      "\xE0\x9F\xBF",      // overlong U+07FF
      "\xF0\x8F\xBF\xBF",  // overlong U+FFFF
      "\xED\xA0\x80",      // U+D800
      "\xED\xBF\xBF",      // U+DFFF
      "\xF4\x90\x80\x80",  // U+110000
      "\xF5\x80\x80\x80",  // never UTF-8
      "\x80",              // a continuation byte first
      "\xFF",
  };
  for (const std::string& bad : invalid) {
    const std::string text = "ok " + bad + " ok";
    EXPECT_FALSE(isValidUtf8(bytesOf(text))) << text;
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      Utf8Validator validator;
      const bool first = validator.feed(bytesOf(text.substr(0, cut)));
      const bool second = first && validator.feed(bytesOf(text.substr(cut)));
      EXPECT_FALSE(second) << "split at " << cut;
      EXPECT_TRUE(validator.failed());
    }
  }
}

TEST(Utf8Test, ATextThatEndsInsideACodePointIsNotComplete) {
  Utf8Validator validator;
  EXPECT_TRUE(validator.feed(bytesOf("abc\xE2\x9C")));
  EXPECT_FALSE(validator.complete());
  EXPECT_FALSE(isValidUtf8(bytesOf("abc\xE2\x9C")));
  EXPECT_TRUE(isValidUtf8(bytesOf("")));
}

TEST(Utf8Test, LongAsciiRunsAndAMultiByteCharacterAfterThemAreChecked) {
  std::string text(1000, 'a');
  text += "\xE2\x9C\x93";
  text += std::string(13, 'b');
  EXPECT_TRUE(isValidUtf8(bytesOf(text)));
  text[1000 + 3 + 5] = static_cast<char>(0xC0);
  EXPECT_FALSE(isValidUtf8(bytesOf(text)));
}

}  // namespace
}  // namespace wsgate::gateway
