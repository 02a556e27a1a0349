// RFC 6455 §5 framing without sockets: an incremental frame-header parser that accepts any split
// of the byte stream, the per-direction protocol rules (masking, reserved bits and opcodes,
// control frames, fragmentation), and encoders for the frames the gateway writes itself.
// Payloads are never copied here: the relay forwards them as they came.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace wsgate::gateway {

namespace opcode {
inline constexpr uint8_t kContinuation = 0x0;
inline constexpr uint8_t kText = 0x1;
inline constexpr uint8_t kBinary = 0x2;
inline constexpr uint8_t kClose = 0x8;
inline constexpr uint8_t kPing = 0x9;
inline constexpr uint8_t kPong = 0xA;
}  // namespace opcode

inline constexpr size_t kMaxFrameHeaderSize = 14;
inline constexpr size_t kMaxControlPayload = 125;

struct FrameHeader {
  bool fin = false;
  bool rsv1 = false;
  bool rsv2 = false;
  bool rsv3 = false;
  uint8_t opcode = 0;
  bool masked = false;
  uint64_t payload_length = 0;
  std::array<uint8_t, 4> mask_key{};
  uint8_t size = 0;  // bytes of header on the wire (2..14)

  bool isControl() const { return (opcode & 0x8) != 0; }
};

// Parses one frame header from bytes fed in pieces of any size. Keeps the raw header bytes
// (at most 14) so that a header split across reads can be forwarded once it is complete.
class FrameHeaderParser {
 public:
  // Consumes bytes from `data` up to the end of the current header and returns how many it took.
  size_t feed(const uint8_t* data, size_t size);
  bool complete() const { return have_ == need_ && decoded_; }
  // True once the bytes seen can never form a valid header: a 64-bit length with the top bit
  // set, or a length not written with the fewest bytes (RFC 6455 §5.2).
  bool invalid() const { return invalid_; }
  size_t buffered() const { return have_; }
  const FrameHeader& header() const { return header_; }
  std::span<const uint8_t> raw() const { return {bytes_.data(), have_}; }
  void reset();

 private:
  void decode();

  std::array<uint8_t, kMaxFrameHeaderSize> bytes_{};
  uint8_t have_ = 0;
  uint8_t need_ = 2;
  bool decoded_ = false;
  bool invalid_ = false;
  FrameHeader header_;
};

// Enforces the per-direction framing rules on each header, in stream order, and tracks the
// fragmented message in progress. One per direction.
class FrameSequencer {
 public:
  // `from_client`: frames must be masked (client to server) or unmasked (server to client).
  // `allow_rsv1`: permessage-deflate was negotiated.
  FrameSequencer(bool from_client, bool allow_rsv1)
      : from_client_(from_client), allow_rsv1_(allow_rsv1) {}

  // Returns nullptr if `header` is valid here (and records it), else the reason of the protocol
  // error (close code 1002), a static string.
  const char* check(const FrameHeader& header);
  // Data frames: payload bytes of the current message so far, including the last checked frame.
  uint64_t messageLength() const { return message_length_; }
  // True if the last checked header ended a data message (fin on a data or continuation frame).
  bool messageEnded() const { return message_ended_; }
  // True while the last data message checked had RSV1 on its first frame.
  bool compressed() const { return compressed_; }

 private:
  bool from_client_;
  bool allow_rsv1_;
  bool in_message_ = false;
  bool message_ended_ = false;
  bool compressed_ = false;
  uint64_t message_length_ = 0;
};

// XORs `data` with `key`, where `data` starts `offset` bytes into the payload.
void applyMask(uint8_t* data, size_t size, const std::array<uint8_t, 4>& key, uint64_t offset);

// Writes a frame header for the given fields into `out`; returns its size.
size_t encodeHeader(const FrameHeader& header, uint8_t* out);

// A complete control frame the gateway injects (close, ping, pong): at most 14 + 125 bytes.
struct ControlFrame {
  std::array<uint8_t, kMaxFrameHeaderSize + kMaxControlPayload> bytes{};
  size_t size = 0;
  std::span<const uint8_t> data() const { return {bytes.data(), size}; }
};

// A close frame with `code` and `reason` (cut to fit 125 bytes, on a UTF-8 boundary). Frames
// toward a server (`mask` true) are masked with a random key, as RFC 6455 requires.
ControlFrame makeCloseFrame(uint16_t code, std::string_view reason, bool mask);

// Four random bytes (a mask key; pieces of a ping payload). Per-thread generator.
std::array<uint8_t, 4> randomMaskKey();

// A ping frame with `payload` (at most 125 bytes), masked with a random key when `mask`.
ControlFrame makePingFrame(std::span<const uint8_t> payload, bool mask);

// Close code of a close frame's (unmasked) payload: 1005 (no status) when it has none.
uint16_t closeCode(std::span<const uint8_t> payload);

// The metric label of a close code. A peer picks its code freely, so only the registered codes
// (1000–1015) are labelled by number; 3000–3999 and 4000–4999 become "3xxx" and "4xxx", and
// anything else "invalid": at most 19 values, whatever peers send.
std::string_view closeCodeLabel(uint16_t code);
inline constexpr std::string_view kInvalidCloseLabel = "invalid";

}  // namespace wsgate::gateway
