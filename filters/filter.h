// The two filter interfaces of the gateway (see docs/architecture.md):
//  - a HandshakeFilter sees the upgrade request and may reject it with an HTTP status;
//  - a MessageFilter sees every frame header, per direction, and may close the session with a
//    WebSocket close code, before the frame's payload is forwarded.
// A FilterFactory is the immutable, validated config of one filter on one route, shared by all
// sessions (and threads); it hands out per-session MessageFilter objects that hold only
// per-session state and live on the session's worker thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/filter_catalog.h"

namespace wsgate::filters {

enum class Direction : uint8_t { kClientToUpstream = 0, kUpstreamToClient = 1 };

inline constexpr std::string_view directionName(Direction d) {
  return d == Direction::kClientToUpstream ? "client_to_upstream" : "upstream_to_client";
}

// Read-only view of the client's upgrade request.
class HandshakeRequest {
 public:
  virtual ~HandshakeRequest() = default;
  // Value of the first header `name` (case-insensitive); nullopt when absent.
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;
  virtual std::string_view target() const = 0;          // request-target, e.g. "/chat?x=1"
  virtual std::string_view clientAddress() const = 0;   // peer IP, no port
  virtual std::string_view routeName() const = 0;
  // Whether the client came over TLS, and its verified certificate: the subject (RFC 2253)
  // then its DNS, email and URI names, "CN=alice,O=Example; DNS:alice.example.com"; empty
  // without TLS, without a client certificate, or with one that did not verify.
  virtual bool secure() const = 0;
  virtual std::string_view clientCertificate() const = 0;
};

struct HandshakeRejection {
  unsigned status;     // HTTP status, e.g. 403
  std::string reason;  // short text sent as the body and logged
};
using HandshakeVerdict = std::optional<HandshakeRejection>;  // nullopt: continue

class HandshakeFilter {
 public:
  virtual ~HandshakeFilter() = default;
  virtual HandshakeVerdict onHandshake(const HandshakeRequest& request) const = 0;
};

// One frame as a message filter sees it: header facts only, decided before the payload moves.
struct FrameEvent {
  Direction direction;
  uint8_t opcode;            // 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong
  bool fin;
  bool compressed;           // RSV1 on the first frame of a permessage-deflate message
  uint64_t payload_length;   // this frame
  uint64_t message_length;   // data frames: bytes of the message so far, this frame included
  bool isControl() const { return opcode >= 8; }
};

struct CloseVerdict {
  uint16_t code;            // sent to the side whose frame triggered it (e.g. 1009)
  std::string_view reason;  // must outlive the call: point into the filter's config
};
using FrameVerdict = std::optional<CloseVerdict>;  // nullopt: continue

// Per-session state; called on the session's worker thread only.
class MessageFilter {
 public:
  virtual ~MessageFilter() = default;
  virtual FrameVerdict onFrame(const FrameEvent& frame) = 0;
};

class FilterFactory : public config::BuiltFilter {
 public:
  // Registry name, used as the `filter` metric label.
  virtual std::string_view name() const = 0;
  // Stateless and shared; nullptr if this filter does not look at handshakes.
  virtual const HandshakeFilter* handshakeFilter() const { return nullptr; }
  // A fresh per-session filter; nullptr if this filter does not look at frames.
  virtual std::unique_ptr<MessageFilter> newMessageFilter() const { return nullptr; }
};

}  // namespace wsgate::filters
