// Fuzzes the RFC 6455 frame codec (codec/frame_codec.h) the way the relay drives it
// (Session::consume): a byte stream arrives in reads of arbitrary sizes; frame headers are fed to
// a FrameHeaderParser piece by piece, each complete header goes through FrameSequencer::check,
// and payloads are skipped (close payloads captured, unmasked and read with closeCode).
//
// Input: [k][k split sizes][stream...], k = input[0] & 7. Reads of the stream take the split
// sizes in turn (a 0 also checks that feeding nothing is harmless); k == 0 means one read.
// input[0] & 8 chooses whether the gateway's own close frame (makeCloseFrame) is masked.
//
// Every header is checked against an independent decode of the same stream bytes (RFC 6455
// §5.2), and every sequencer verdict against a model of §5.4/§5.5 (+ RFC 7692 for RSV1), in all
// four configurations: from client / from server, with and without permessage-deflate.
// Lengths must be written with the fewest bytes (§5.2): the parser flags others as invalid.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "codec/frame_codec.h"
#include "tests/fuzz/fuzz_check.h"

using namespace wsgate::gateway;

namespace {

// What the stream bytes at a header's start say, decoded straight from RFC 6455 §5.2.
struct ReferenceHeader {
  FrameHeader h;
  bool invalid = false;  // 64-bit length with the most significant bit set
  bool minimal = true;   // length written with the fewest bytes, as §5.2 requires
};

// `bytes` holds at least the header; returns false if it does not (stream ended first).
bool referenceDecode(std::span<const uint8_t> bytes, ReferenceHeader& out) {
  if (bytes.size() < 2) return false;
  const uint8_t b0 = bytes[0];
  const uint8_t b1 = bytes[1];
  FrameHeader& h = out.h;
  h.fin = (b0 >> 7) & 1;
  h.rsv1 = (b0 >> 6) & 1;
  h.rsv2 = (b0 >> 5) & 1;
  h.rsv3 = (b0 >> 4) & 1;
  h.opcode = b0 & 0x0F;
  h.masked = (b1 >> 7) & 1;
  const unsigned len7 = b1 & 0x7F;
  const size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  const size_t size = 2 + ext + (h.masked ? 4 : 0);
  if (bytes.size() < size) return false;
  uint64_t length = len7;
  if (ext) {
    length = 0;
    for (size_t i = 0; i < ext; ++i) length = (length << 8) | bytes[2 + i];
  }
  h.payload_length = length;
  h.size = static_cast<uint8_t>(size);
  if (h.masked) {
    for (size_t i = 0; i < 4; ++i) h.mask_key[i] = bytes[2 + ext + i];
  }
  out.invalid = len7 == 127 && (length >> 63) != 0;
  out.minimal = len7 < 126 || (len7 == 126 && length >= 126) || (len7 == 127 && length > 0xFFFF);
  return true;
}

// The framing rules of RFC 6455 §5.2-5.5 and RFC 7692 §6 (RSV1 on a message's first frame
// only, and only once permessage-deflate is agreed), kept apart from the code under test.
struct SequencerModel {
  bool from_client;
  bool allow_rsv1;
  bool in_message = false;
  bool message_ended = false;
  bool compressed = false;
  uint64_t message_length = 0;

  // True if the frame is a protocol error; else records it.
  bool violates(const FrameHeader& h) {
    if (h.masked != from_client) return true;                  // §5.1, §5.3
    if (h.rsv2 || h.rsv3) return true;                          // §5.2, no extension uses them
    const bool control = h.opcode >= 0x8;
    if (control) {
      if (h.opcode > 0xA) return true;                          // reserved control opcodes
      if (!h.fin || h.payload_length > 125) return true;        // §5.5
      if (h.rsv1) return true;                                  // RFC 7692: data frames only
      if (h.opcode == 0x8 && h.payload_length == 1) return true;  // §5.5.1: code is 2 bytes
      message_ended = false;  // a control frame in between leaves the message as it was
      return false;
    }
    if (h.opcode > 0x2) return true;                            // reserved data opcodes
    if (h.opcode == 0x0) {
      if (!in_message) return true;                             // §5.4
      if (h.rsv1) return true;                                  // RFC 7692 §6.1
      message_length += h.payload_length;
    } else {
      if (in_message) return true;                              // §5.4: no interleaving
      if (h.rsv1 && !allow_rsv1) return true;
      compressed = h.rsv1;
      message_length = h.payload_length;
    }
    in_message = !h.fin;
    message_ended = h.fin;
    return false;
  }
};

struct CheckedSequencer {
  FrameSequencer real;
  SequencerModel model;
  bool alive = true;  // the relay stops consulting a direction after its first violation
  CheckedSequencer(bool from_client, bool allow_rsv1)
      : real(from_client, allow_rsv1), model{from_client, allow_rsv1} {}

  void check(const FrameHeader& h) {
    if (!alive) return;
    const uint64_t length_before = real.messageLength();
    const bool compressed_before = real.compressed();
    const char* reason = real.check(h);
    const bool expected_violation = model.violates(h);
    FUZZ_CHECK((reason != nullptr) == expected_violation);
    if (reason) {
      FUZZ_CHECK(reason[0] != '\0');  // a close reason for the log
      alive = false;
      return;
    }
    FUZZ_CHECK(real.messageEnded() == model.message_ended);
    if (h.isControl()) {
      // Control frames are not part of the data message around them.
      FUZZ_CHECK(real.messageLength() == length_before);
      FUZZ_CHECK(real.compressed() == compressed_before);
    } else {
      FUZZ_CHECK(real.messageLength() == model.message_length);
      FUZZ_CHECK(real.compressed() == model.compressed);
    }
  }
};

uint16_t referenceCloseCode(std::span<const uint8_t> payload) {
  if (payload.size() < 2) return 1005;
  return static_cast<uint16_t>(payload[0] * 256 + payload[1]);
}

// applyMask on one piece of a payload that starts `offset` bytes into it: must equal the §5.3
// XOR, and masking twice must give the bytes back.
void checkMaskPiece(std::span<const uint8_t> piece, const std::array<uint8_t, 4>& key,
                    uint64_t offset) {
  std::vector<uint8_t> copy(piece.begin(), piece.end());
  applyMask(copy.data(), copy.size(), key, offset);
  for (size_t i = 0; i < piece.size(); ++i) {
    FUZZ_CHECK(copy[i] == (piece[i] ^ key[(offset + i) % 4]));
  }
  applyMask(copy.data(), copy.size(), key, offset);
  FUZZ_CHECK(std::memcmp(copy.data(), piece.data(), piece.size()) == 0);
}

// The gateway's own close frame: a valid control frame in its direction that carries the code
// and the longest UTF-8-safe prefix of the reason that fits.
void checkCloseFrame(uint16_t code, std::string_view reason, bool mask) {
  const ControlFrame frame = makeCloseFrame(code, reason, mask);
  FUZZ_CHECK(frame.size <= kMaxFrameHeaderSize + kMaxControlPayload);
  FUZZ_CHECK(frame.size >= 2 + 2);
  FrameHeaderParser parser;
  const size_t used = parser.feed(frame.bytes.data(), frame.size);
  FUZZ_CHECK(parser.complete());
  FUZZ_CHECK(!parser.invalid());
  const FrameHeader& h = parser.header();
  FUZZ_CHECK(used == h.size);
  FUZZ_CHECK(h.fin && h.opcode == opcode::kClose && h.masked == mask);
  FUZZ_CHECK(!h.rsv1 && !h.rsv2 && !h.rsv3);
  FUZZ_CHECK(h.payload_length == frame.size - h.size);
  FUZZ_CHECK(h.payload_length >= 2 && h.payload_length <= kMaxControlPayload);
  // Toward a server the gateway is the client (masked), toward a client the server.
  FrameSequencer sequencer(/*from_client=*/mask, /*allow_rsv1=*/false);
  FUZZ_CHECK(sequencer.check(h) == nullptr);

  std::array<uint8_t, kMaxControlPayload> payload{};
  std::memcpy(payload.data(), frame.bytes.data() + h.size, h.payload_length);
  if (mask) applyMask(payload.data(), h.payload_length, h.mask_key, 0);
  FUZZ_CHECK(closeCode({payload.data(), h.payload_length}) == code);
  const size_t kept = h.payload_length - 2;
  FUZZ_CHECK(kept <= reason.size());
  FUZZ_CHECK(std::memcmp(payload.data() + 2, reason.data(), kept) == 0);
  if (kept < reason.size()) {
    constexpr size_t kRoom = kMaxControlPayload - 2;
    auto continuation = [&](size_t i) { return (static_cast<uint8_t>(reason[i]) & 0xC0) == 0x80; };
    FUZZ_CHECK(reason.size() > kRoom);
    FUZZ_CHECK(kept <= kRoom);
    // Cut right before a byte that starts a character, as late as possible.
    FUZZ_CHECK(kept == 0 || !continuation(kept));
    for (size_t i = kept + 1; i <= kRoom; ++i) FUZZ_CHECK(continuation(i));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const size_t k = std::min<size_t>(flags & 7, size - 1);
  const std::span<const uint8_t> splits(data + 1, k);
  const uint8_t* stream = data + 1 + k;
  const size_t stream_size = size - 1 - k;

  // The gateway's own frames, with a code and reason taken from the input.
  {
    const uint16_t code = stream_size >= 2 ? static_cast<uint16_t>(stream[0] << 8 | stream[1]) : 1000;
    const size_t reason_size = stream_size >= 2 ? std::min<size_t>(stream_size - 2, 200) : 0;
    checkCloseFrame(code, {reinterpret_cast<const char*>(stream) + 2 * (stream_size >= 2), reason_size},
                    (flags & 8) != 0);
  }

  std::array<CheckedSequencer, 4> sequencers = {
      CheckedSequencer{true, false}, CheckedSequencer{true, true},
      CheckedSequencer{false, false}, CheckedSequencer{false, true}};

  FrameHeaderParser parser;
  size_t pos = 0;            // stream offset
  size_t header_start = 0;   // stream offset of the header being parsed
  uint64_t remaining = 0;    // payload bytes of the current frame still to come
  uint64_t payload_offset = 0;
  FrameHeader frame;         // the frame whose payload is being skipped
  std::vector<uint8_t> close_payload;
  bool framing_lost = false;
  size_t split_index = 0;

  const bool all_zero = std::all_of(splits.begin(), splits.end(), [](uint8_t s) { return s == 0; });
  while (pos < stream_size && !framing_lost) {
    // One read.
    size_t read_size = stream_size - pos;
    if (!splits.empty()) {
      const uint8_t s = splits[split_index++ % splits.size()];
      if (s == 0) {
        // Feeding nothing takes nothing and changes nothing.
        const size_t before = parser.buffered();
        const bool was_complete = parser.complete();
        FUZZ_CHECK(parser.feed(stream + pos, 0) == 0);
        FUZZ_CHECK(parser.buffered() == before && parser.complete() == was_complete);
        if (!all_zero) continue;  // else: read the rest at once
      } else {
        read_size = std::min<size_t>(s, read_size);
      }
    }
    const size_t read_end = pos + read_size;
    while (pos < read_end) {
      if (remaining > 0) {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining, read_end - pos));
        const std::span<const uint8_t> piece(stream + pos, take);
        const std::array<uint8_t, 4> key =
            frame.masked ? frame.mask_key : std::array<uint8_t, 4>{piece[0], 0x5A, 0xA5, 0xFF};
        checkMaskPiece(piece, key, payload_offset);
        FUZZ_CHECK(closeCode(piece) == referenceCloseCode(piece));
        if (frame.opcode == opcode::kClose && close_payload.size() < 256) {
          const size_t n = std::min<size_t>(take, 256 - close_payload.size());
          close_payload.insert(close_payload.end(), piece.begin(), piece.begin() + n);
        }
        pos += take;
        payload_offset += take;
        remaining -= take;
      } else {
        const size_t before = parser.buffered();
        if (before == 0) header_start = pos;
        FUZZ_CHECK(!parser.complete());
        const size_t offered = read_end - pos;
        const size_t taken = parser.feed(stream + pos, offered);
        FUZZ_CHECK(taken <= offered);
        FUZZ_CHECK(parser.buffered() == before + taken);
        FUZZ_CHECK(parser.buffered() <= kMaxFrameHeaderSize);
        FUZZ_CHECK(parser.raw().size() == parser.buffered());
        // The raw bytes kept are exactly the stream's bytes of this header so far.
        FUZZ_CHECK(std::memcmp(parser.raw().data(), stream + header_start, parser.buffered()) == 0);
        pos += taken;
        if (!parser.complete()) {
          // Short of a whole header, the parser takes everything it is given.
          FUZZ_CHECK(taken == offered);
          FUZZ_CHECK(!parser.invalid());
          break;
        }
        const FrameHeader h = parser.header();
        FUZZ_CHECK(h.size >= 2 && h.size <= kMaxFrameHeaderSize);
        FUZZ_CHECK(h.size == parser.buffered());
        ReferenceHeader ref;
        FUZZ_CHECK(referenceDecode({stream + header_start, stream_size - header_start}, ref));
        FUZZ_CHECK(h.size == ref.h.size);
        FUZZ_CHECK(h.fin == ref.h.fin && h.rsv1 == ref.h.rsv1 && h.rsv2 == ref.h.rsv2 &&
                   h.rsv3 == ref.h.rsv3);
        FUZZ_CHECK(h.opcode == ref.h.opcode && h.masked == ref.h.masked);
        FUZZ_CHECK(h.payload_length == ref.h.payload_length);
        if (h.masked) FUZZ_CHECK(h.mask_key == ref.h.mask_key);
        FUZZ_CHECK(h.isControl() == (h.opcode >= 8));
        // A length not written with the fewest bytes breaks RFC 6455 §5.2 as well.
        FUZZ_CHECK(parser.invalid() == (ref.invalid || !ref.minimal));
        // Once complete, the parser takes nothing more until reset.
        if (pos < read_end) {
          FUZZ_CHECK(parser.feed(stream + pos, read_end - pos) == 0);
          FUZZ_CHECK(parser.buffered() == h.size && parser.complete());
        }
        if (parser.invalid()) {
          framing_lost = true;  // the relay stops reading this direction
          break;
        }
        // Encoding the decoded fields gives the same bytes when the sender used the minimal
        // length encoding, and never more bytes.
        std::array<uint8_t, kMaxFrameHeaderSize> encoded{};
        const size_t encoded_size = encodeHeader(h, encoded.data());
        FUZZ_CHECK(encoded_size >= 2 && encoded_size <= h.size);
        if (ref.minimal) {
          FUZZ_CHECK(encoded_size == h.size);
          FUZZ_CHECK(std::memcmp(encoded.data(), parser.raw().data(), h.size) == 0);
        }
        for (auto& s : sequencers) s.check(h);

        parser.reset();
        FUZZ_CHECK(parser.buffered() == 0 && !parser.complete() && !parser.invalid());
        frame = h;
        remaining = h.payload_length;
        payload_offset = 0;
        close_payload.clear();
      }
      if (remaining == 0 && parser.buffered() == 0 && frame.opcode == opcode::kClose) {
        // End of a close frame: its code, read as the relay does (unmasked first).
        if (frame.masked) applyMask(close_payload.data(), close_payload.size(), frame.mask_key, 0);
        const uint16_t code = closeCode(close_payload);
        FUZZ_CHECK(code == referenceCloseCode(close_payload));
        frame.opcode = opcode::kContinuation;  // counted once
      }
    }
  }
  return 0;
}
