// Incremental UTF-8 validation (RFC 3629) for text that arrives in pieces: a code point may be
// split across frames and reads. Rejects what RFC 6455 §8.1 calls invalid: bytes that are never
// UTF-8, overlong forms, surrogates (U+D800–U+DFFF) and code points above U+10FFFF. Pure: no I/O,
// one small state per message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace wsgate::gateway {

class Utf8Validator {
 public:
  // Feeds the next bytes of the text; false as soon as they cannot be part of valid UTF-8 (and
  // from then on, until reset()).
  bool feed(std::span<const uint8_t> bytes);
  // True when the bytes fed so far end between code points: a text may end here.
  bool complete() const { return !failed_ && remaining_ == 0; }
  bool failed() const { return failed_; }
  void reset() { *this = Utf8Validator(); }

 private:
  uint8_t remaining_ = 0;  // continuation bytes still expected for the current code point
  uint8_t low_ = 0x80;     // bounds of the next continuation byte (overlongs, surrogates, range)
  uint8_t high_ = 0xBF;
  bool failed_ = false;
};

// The whole of `bytes` is valid UTF-8 (a close reason, a single-frame text).
bool isValidUtf8(std::span<const uint8_t> bytes);

}  // namespace wsgate::gateway
