// The two filter interfaces of the gateway (see docs/architecture.md):
//  - a HandshakeFilter sees the upgrade request and may reject it with an HTTP status, and may
//    hold a slot (a count of live connections) for as long as the connection lives;
//  - a MessageFilter sees every frame header, per direction, before the frame's payload is
//    forwarded, and may close the session, throttle the frame's source, or ask to see the
//    frame's payload; it may also ping either leg, wake itself at a time, and end the session.
// A FilterFactory is the immutable, validated config of one filter on one route, shared by all
// sessions (and threads); it hands out per-session MessageFilter objects that hold only
// per-session state and live on the session's worker thread. State shared between sessions
// (per client address counts) belongs to the factory and is touched once per handshake, never
// per frame.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/filter_catalog.h"

namespace wsgate::filters {

using Clock = std::chrono::steady_clock;

enum class Direction : uint8_t { kClientToUpstream = 0, kUpstreamToClient = 1 };
// The two legs of a session; a direction's source is the leg of the same number.
enum class Side : uint8_t { kClient = 0, kUpstream = 1 };

inline constexpr Side sourceOf(Direction d) { return static_cast<Side>(d); }
inline constexpr std::string_view sideName(Side s) {
  return s == Side::kClient ? "client" : "upstream";
}

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
  // The `reason` label of wsgate_filter_rejections_total: one of a fixed set per filter
  // (a literal), never text taken from the request.
  std::string_view label = "rejected";
  unsigned retry_after_seconds = 0;  // > 0: sent as Retry-After
};
using HandshakeVerdict = std::optional<HandshakeRejection>;  // nullopt: continue

// A slot a handshake filter took for one connection (a place in a count of live sessions).
// Destroying it gives the slot back; the gateway keeps it until the connection ends, whether
// the upgrade succeeded or not.
class Admission {
 public:
  virtual ~Admission() = default;
};
using Admissions = std::vector<std::unique_ptr<Admission>>;

class HandshakeFilter {
 public:
  virtual ~HandshakeFilter() = default;
  virtual HandshakeVerdict onHandshake(const HandshakeRequest& request) const = 0;
  // After every handshake filter passed: filters that count connections take their slot here
  // (into `admissions`) or reject. Called once per handshake, on any worker thread.
  virtual HandshakeVerdict admit(const HandshakeRequest&, Admissions&) const {
    return std::nullopt;
  }
  // The backend accepted the upgrade choosing `protocol` ("" for none); a rejection here is
  // answered to the client (a backend's bad choice is a 502) and the backend is let go.
  virtual HandshakeVerdict onUpstreamAccepted(const HandshakeRequest&,
                                              std::string_view /*protocol*/) const {
    return std::nullopt;
  }
};

// One frame as a message filter sees it: header facts only, decided before the payload moves.
struct FrameEvent {
  Direction direction;
  uint8_t opcode;            // 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong
  bool fin;
  bool compressed;           // RSV1 on the first frame of a permessage-deflate message
  uint64_t payload_length;   // this frame
  uint64_t message_length;   // data frames: bytes of the message so far, this frame included
  Clock::time_point now{};   // when the read that brought this header woke the session
  bool isControl() const { return opcode >= 8; }
};

// What a filter decides about one frame (or, for onPayload, about the payload seen so far).
class FrameVerdict {
 public:
  enum class Kind : uint8_t {
    kContinue,  // forward the frame
    kClose,     // close the frame's source with `code` (the other side gets 1001)
    kThrottle,  // forward the frame, but read its source again no sooner than `until`
    kInspect,   // forward the frame, and show its payload to this filter's onPayload
  };

  constexpr FrameVerdict() = default;
  // `reason` (sent in the close frame) must outlive the session: point into the filter's
  // config or a literal. `label` is the metric's reason label: a literal from a fixed set.
  static constexpr FrameVerdict close(uint16_t code, std::string_view reason,
                                      std::string_view label) {
    FrameVerdict v;
    v.kind_ = Kind::kClose;
    v.code_ = code;
    v.reason_ = reason;
    v.label_ = label;
    return v;
  }
  static constexpr FrameVerdict throttle(Clock::time_point until) {
    FrameVerdict v;
    v.kind_ = Kind::kThrottle;
    v.until_ = until;
    return v;
  }
  static constexpr FrameVerdict inspect() {
    FrameVerdict v;
    v.kind_ = Kind::kInspect;
    return v;
  }

  Kind kind() const { return kind_; }
  bool closes() const { return kind_ == Kind::kClose; }
  uint16_t code() const { return code_; }
  std::string_view reason() const { return reason_; }
  std::string_view label() const { return label_; }
  Clock::time_point until() const { return until_; }

 private:
  Kind kind_ = Kind::kContinue;
  uint16_t code_ = 0;
  std::string_view reason_;
  std::string_view label_;
  Clock::time_point until_{};
};

// What a per-session filter may ask of its session. Every call is on the session's worker
// thread; the session outlives its filters.
class SessionControl {
 public:
  // Sends a ping from the gateway to `side` at that leg's next frame boundary. Its pong is
  // recognised by its payload and consumed (filters still see its header in onFrame); pings and
  // pongs between the peers pass as before. False when one is still unanswered or the leg is
  // closing.
  virtual bool ping(Side side) = 0;
  // Ends the session politely: `code` and `reason` to both legs at their frame boundaries.
  virtual void goAway(uint16_t code, std::string_view reason) = 0;
  // `side` answered no keepalive ping in time: its connection is closed without waiting for
  // anything (counted in wsgate_keepalive_timeouts_total), and the other side gets 1001 with
  // `reason`.
  virtual void abandon(Side side, std::string_view reason) = 0;
  // Calls this filter's onTimer at or soon after `when`; a later call replaces an earlier one.
  // Only from within a call into the filter (onStart, onFrame, onPayload, onTimer).
  virtual void wakeAt(Clock::time_point when) = 0;

 protected:
  ~SessionControl() = default;
};

// The facts of one session, given to each of its filters when they are made.
struct SessionContext {
  std::string_view route;
  std::string_view client_address;  // peer IP, no port
  Clock::time_point started{};
  SessionControl* control = nullptr;  // null only in tests of filters that never use it
};

// Per-session state; called on the session's worker thread only. A filter that throws closes
// its session with 1011 (and a log line and a count); it never reaches the worker's loop.
class MessageFilter {
 public:
  virtual ~MessageFilter() = default;
  // The relay starts (the place to ask for a first wake-up).
  virtual void onStart(Clock::time_point /*now*/) {}
  virtual FrameVerdict onFrame(const FrameEvent& frame) = 0;
  // After a kInspect verdict for `frame`: its payload, unmasked, in pieces as it arrives;
  // `frame_end` on the last piece (an empty payload gets one empty piece). Only kClose and
  // kContinue count here. A frame closed here may already be partly forwarded.
  virtual FrameVerdict onPayload(const FrameEvent& /*frame*/, std::span<const uint8_t> /*piece*/,
                                 bool /*frame_end*/) {
    return {};
  }
  // The time asked for with SessionControl::wakeAt has come.
  virtual void onTimer(Clock::time_point /*now*/) {}
};

class FilterFactory : public config::BuiltFilter {
 public:
  // Registry name, used as the `filter` metric label.
  virtual std::string_view name() const = 0;
  // Stateless and shared; nullptr if this filter does not look at handshakes.
  virtual const HandshakeFilter* handshakeFilter() const { return nullptr; }
  // True if this filter reads payloads (FrameVerdict::inspect): routes with such a filter do
  // not forward the client's Sec-WebSocket-Extensions, so that payloads are never compressed.
  virtual bool readsPayload() const { return false; }
  // A fresh per-session filter; nullptr if this filter does not look at frames.
  virtual std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext&) const {
    return nullptr;
  }
};

}  // namespace wsgate::filters
