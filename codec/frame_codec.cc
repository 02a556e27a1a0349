#include "codec/frame_codec.h"

#include <algorithm>
#include <cstring>
#include <random>

namespace wsgate::gateway {

size_t FrameHeaderParser::feed(const uint8_t* data, size_t size) {
  size_t taken = 0;
  while (taken < size && have_ < need_) {
    const size_t n = std::min<size_t>(need_ - have_, size - taken);
    std::memcpy(bytes_.data() + have_, data + taken, n);
    have_ += static_cast<uint8_t>(n);
    taken += n;
    if (have_ == 2 && need_ == 2) {
      // The first two bytes tell how long the whole header is.
      const uint8_t len7 = bytes_[1] & 0x7F;
      need_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((bytes_[1] & 0x80) ? 4 : 0);
    }
  }
  if (have_ == need_ && !decoded_) decode();
  return taken;
}

void FrameHeaderParser::decode() {
  FrameHeader& h = header_;
  h.fin = bytes_[0] & 0x80;
  h.rsv1 = bytes_[0] & 0x40;
  h.rsv2 = bytes_[0] & 0x20;
  h.rsv3 = bytes_[0] & 0x10;
  h.opcode = bytes_[0] & 0x0F;
  h.masked = bytes_[1] & 0x80;
  const uint8_t len7 = bytes_[1] & 0x7F;
  size_t pos = 2;
  if (len7 == 126) {
    h.payload_length = (uint64_t{bytes_[2]} << 8) | bytes_[3];
    pos = 4;
    if (h.payload_length < 126) invalid_ = true;  // RFC 6455 §5.2: the fewest bytes, a MUST
  } else if (len7 == 127) {
    h.payload_length = 0;
    for (int i = 0; i < 8; ++i) h.payload_length = (h.payload_length << 8) | bytes_[2 + i];
    pos = 10;
    if (h.payload_length >> 63 || h.payload_length <= 0xFFFF) invalid_ = true;
  } else {
    h.payload_length = len7;
  }
  if (h.masked) std::memcpy(h.mask_key.data(), bytes_.data() + pos, 4);
  h.size = need_;
  decoded_ = true;
}

void FrameHeaderParser::reset() {
  have_ = 0;
  need_ = 2;
  decoded_ = false;
  invalid_ = false;
}

const char* FrameSequencer::check(const FrameHeader& h) {
  message_ended_ = false;
  if (from_client_ && !h.masked) return "client frame not masked";
  if (!from_client_ && h.masked) return "server frame masked";
  if (h.rsv2 || h.rsv3) return "reserved bit set";
  if (h.isControl()) {
    if (h.opcode > opcode::kPong) return "reserved opcode";
    if (!h.fin) return "fragmented control frame";
    if (h.payload_length > kMaxControlPayload) return "control frame over 125 bytes";
    if (h.rsv1) return "reserved bit set";
    if (h.opcode == opcode::kClose && h.payload_length == 1) return "close frame with 1-byte payload";
    return nullptr;
  }
  if (h.opcode > opcode::kBinary) return "reserved opcode";
  if (h.opcode == opcode::kContinuation) {
    if (!in_message_) return "continuation frame without a message";
    if (h.rsv1) return "reserved bit set";  // RSV1 belongs on the first frame only (RFC 7692)
    message_length_ += h.payload_length;
  } else {
    if (in_message_) return "new message inside a fragmented message";
    if (h.rsv1 && !allow_rsv1_) return "reserved bit set";
    compressed_ = h.rsv1;
    message_length_ = h.payload_length;
  }
  in_message_ = !h.fin;
  message_ended_ = h.fin;
  return nullptr;
}

// Eight bytes at a time: the key, turned to start at `offset`, repeated over a word.
void applyMask(uint8_t* data, size_t size, const std::array<uint8_t, 4>& key, uint64_t offset) {
  std::array<uint8_t, 8> turned;
  for (size_t i = 0; i < turned.size(); ++i) turned[i] = key[(offset + i) & 3];
  uint64_t word_key;
  std::memcpy(&word_key, turned.data(), sizeof word_key);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, sizeof word);
    word ^= word_key;
    std::memcpy(data + i, &word, sizeof word);
  }
  for (; i < size; ++i) data[i] ^= turned[i & 7];
}

size_t encodeHeader(const FrameHeader& h, uint8_t* out) {
  out[0] = static_cast<uint8_t>((h.fin ? 0x80 : 0) | (h.rsv1 ? 0x40 : 0) | (h.rsv2 ? 0x20 : 0) |
                                (h.rsv3 ? 0x10 : 0) | (h.opcode & 0x0F));
  const uint8_t mask_bit = h.masked ? 0x80 : 0;
  size_t pos;
  if (h.payload_length < 126) {
    out[1] = mask_bit | static_cast<uint8_t>(h.payload_length);
    pos = 2;
  } else if (h.payload_length <= 0xFFFF) {
    out[1] = mask_bit | 126;
    out[2] = static_cast<uint8_t>(h.payload_length >> 8);
    out[3] = static_cast<uint8_t>(h.payload_length);
    pos = 4;
  } else {
    out[1] = mask_bit | 127;
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(h.payload_length >> (56 - 8 * i));
    pos = 10;
  }
  if (h.masked) {
    std::memcpy(out + pos, h.mask_key.data(), 4);
    pos += 4;
  }
  return pos;
}

std::array<uint8_t, 4> randomMaskKey() {
  thread_local std::mt19937 rng{std::random_device{}()};
  const uint32_t v = rng();
  return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 24)};
}

namespace {

// Longest prefix of `text` within `limit` bytes that does not cut a UTF-8 sequence.
std::string_view utf8Prefix(std::string_view text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  while (end > 0 && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace

ControlFrame makeCloseFrame(uint16_t code, std::string_view reason, bool mask) {
  ControlFrame frame;
  reason = utf8Prefix(reason, kMaxControlPayload - 2);
  FrameHeader h;
  h.fin = true;
  h.opcode = opcode::kClose;
  h.masked = mask;
  h.payload_length = 2 + reason.size();
  if (mask) h.mask_key = randomMaskKey();
  const size_t header_size = encodeHeader(h, frame.bytes.data());
  uint8_t* payload = frame.bytes.data() + header_size;
  payload[0] = static_cast<uint8_t>(code >> 8);
  payload[1] = static_cast<uint8_t>(code);
  std::memcpy(payload + 2, reason.data(), reason.size());
  if (mask) applyMask(payload, h.payload_length, h.mask_key, 0);
  frame.size = header_size + h.payload_length;
  return frame;
}

ControlFrame makePingFrame(std::span<const uint8_t> payload, bool mask) {
  ControlFrame frame;
  FrameHeader h;
  h.fin = true;
  h.opcode = opcode::kPing;
  h.masked = mask;
  h.payload_length = std::min(payload.size(), kMaxControlPayload);
  if (mask) h.mask_key = randomMaskKey();
  const size_t header_size = encodeHeader(h, frame.bytes.data());
  uint8_t* out = frame.bytes.data() + header_size;
  std::memcpy(out, payload.data(), h.payload_length);
  if (mask) applyMask(out, h.payload_length, h.mask_key, 0);
  frame.size = header_size + h.payload_length;
  return frame;
}

uint16_t closeCode(std::span<const uint8_t> payload) {
  if (payload.size() < 2) return 1005;
  return static_cast<uint16_t>((payload[0] << 8) | payload[1]);
}

std::string_view closeCodeLabel(uint16_t code) {
  static constexpr std::array<std::string_view, 16> kRegistered = {
      "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007",
      "1008", "1009", "1010", "1011", "1012", "1013", "1014", "1015"};
  if (code >= 1000 && code <= 1015) return kRegistered[code - 1000];
  if (code >= 3000 && code <= 3999) return "3xxx";
  if (code >= 4000 && code <= 4999) return "4xxx";
  return kInvalidCloseLabel;
}

}  // namespace wsgate::gateway
