// `utf8`: text messages (across fragments and reads, code points split anywhere) and close
// reasons must be valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF). Invalid → close 1007 to the sender, 1001 to the other side. The only filter that
// reads payloads: it asks the session for the payload of text and close frames only, so binary
// traffic on its route stays header-only. A route with this filter offers the backend no
// extension (readsPayload), so payloads are never compressed.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "codec/utf8.h"
#include "filters/filter.h"

namespace wsgate::filters {

class Utf8Filter final : public FilterFactory {
 public:
  // [client_to_upstream, upstream_to_client]: which directions are checked.
  explicit Utf8Filter(std::array<bool, 2> directions) : directions_(directions) {}

  std::string_view name() const override { return "utf8"; }
  bool readsPayload() const override { return true; }
  std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext& context) const override;

 private:
  std::array<bool, 2> directions_;
};

// The per-session state, public for tests.
class Utf8Session final : public MessageFilter {
 public:
  explicit Utf8Session(std::array<bool, 2> directions) : directions_(directions) {}

  FrameVerdict onFrame(const FrameEvent& frame) override;
  FrameVerdict onPayload(const FrameEvent& frame, std::span<const uint8_t> piece,
                         bool frame_end) override;

 private:
  struct Flow {
    gateway::Utf8Validator text;   // the text message in progress
    bool in_text = false;          // continuation frames belong to a text message
    gateway::Utf8Validator close;  // the reason of a close frame
    uint8_t code_bytes = 0;        // of the close frame's 2-byte code, seen so far
  };

  std::array<bool, 2> directions_;
  std::array<Flow, 2> flows_;
};

}  // namespace wsgate::filters
