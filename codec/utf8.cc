#include "codec/utf8.h"

#include <cstring>

namespace wsgate::gateway {

bool Utf8Validator::feed(std::span<const uint8_t> bytes) {
  if (failed_) return false;
  const uint8_t* p = bytes.data();
  const uint8_t* const end = p + bytes.size();
  while (p < end) {
    if (remaining_ == 0) {
      // Mostly ASCII: eight bytes at a time while no high bit is set.
      while (end - p >= 8) {
        uint64_t word;
        std::memcpy(&word, p, sizeof word);
        if ((word & 0x8080808080808080ULL) != 0) break;
        p += 8;
      }
      if (p == end) break;
      const uint8_t b = *p++;
      if (b < 0x80) continue;
      low_ = 0x80;
      high_ = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        remaining_ = 1;
      } else if (b == 0xE0) {
        remaining_ = 2;
        low_ = 0xA0;  // below: an overlong form of U+0000–U+07FF
      } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
        remaining_ = 2;
      } else if (b == 0xED) {
        remaining_ = 2;
        high_ = 0x9F;  // above: the surrogates U+D800–U+DFFF
      } else if (b == 0xF0) {
        remaining_ = 3;
        low_ = 0x90;  // below: an overlong form of U+0000–U+FFFF
      } else if (b >= 0xF1 && b <= 0xF3) {
        remaining_ = 3;
      } else if (b == 0xF4) {
        remaining_ = 3;
        high_ = 0x8F;  // above: beyond U+10FFFF
      } else {
        failed_ = true;  // a continuation byte first, C0/C1 (always overlong), F5–FF
        return false;
      }
    } else {
      const uint8_t b = *p++;
      if (b < low_ || b > high_) {
        failed_ = true;
        return false;
      }
      --remaining_;
      low_ = 0x80;
      high_ = 0xBF;
    }
  }
  return true;
}

bool isValidUtf8(std::span<const uint8_t> bytes) {
  Utf8Validator validator;
  return validator.feed(bytes) && validator.complete();
}

}  // namespace wsgate::gateway
