// The relay of one established WebSocket connection: two legs (client, upstream) and two flows
// (client→upstream, upstream→client). Each flow waits with a read into its small landing slot;
// a wake-up that overflows the slot is drained into a buffer lent to the flow while it stays
// busy (io/relay_buffers.h). The flow walks the frame headers of what it read (protocol
// rules, message filters, counters) and writes the same bytes on at once. Only bytes the
// destination could not take are kept, in a per-flow buffer bounded by one read; the flow does
// not read again until they are written, so a slow reader slows its writer instead of growing
// memory.
//
// The gateway's own frames (closes, keepalive pings) are injected only at frame boundaries of
// the flow that carries them; a ping does not end the relay, and the pong answering it is
// recognised by its payload and kept from the other side. Message filters (made here, one set
// per session) see every header and may close, throttle a source (its reads wait until a
// time: TCP backpressure slows the sender) or inspect a frame's payload. All deadlines (close,
// idle, throttles, filters' wake-ups) share one timer, armed at the earliest.
//
// Lifetime: every pending handler holds a shared_ptr; the session ends when both closing
// handshakes are done, a timeout fires, or a leg is lost. Single-threaded: a session lives on
// the worker that accepted its client.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "config/config.h"
#include "filters/filter.h"
#include "proxy/connection_record.h"
#include "codec/frame_codec.h"
#include "io/live_sessions.h"
#include "io/relay_buffers.h"
#include "io/stream.h"
#include "io/worker_context.h"

namespace wsgate::gateway {

// Everything a session needs from the handshake that created it.
struct SessionSetup {
  std::shared_ptr<const config::Config> config;  // keeps `route` alive
  const config::Route* route = nullptr;
  std::string client_address;
  bool permessage_deflate = false;
  // Slots handshake filters took for this connection, given back when the session ends.
  filters::Admissions admissions;
};

class Session final : public std::enable_shared_from_this<Session>,
                      private RelayBuffers::Holder,
                      private filters::SessionControl,
                      private LiveSession {
 public:
  using Clock = filters::Clock;

  Session(WorkerContext& worker, Stream client, Stream upstream, SessionSetup setup,
          ConnectionRecord record);
  ~Session();

  // Starts relaying; `client_early`/`upstream_early` are bytes each side sent right after the
  // handshake and that were already read with it.
  void start(std::span<const uint8_t> client_early, std::span<const uint8_t> upstream_early);

 private:
  static constexpr int kClient = 0;
  static constexpr int kUpstream = 1;

  enum class Mode : uint8_t {
    kRelay,    // forward the source's frames
    kDiscard,  // gateway took over: parse the source's frames, forward nothing, await its close
    kDone,     // source finished (closed or lost): no more reads
  };

  static constexpr size_t kLandingSize = 256;
  static constexpr size_t kPingPayloadSize = 8;
  // A gateway pong from a masked client: the largest frame a held-back pong can be.
  static constexpr size_t kPongFrameMax = 6 + kPingPayloadSize;
  static constexpr Clock::time_point kNever = Clock::time_point::max();
  // A busy flow gives its lent buffer back after this many wake-ups in a row fit the slot.
  static constexpr uint8_t kQuietReadsToReturn = 4;

  // Per flow, what sessions with message filters need: allocated once with the session when
  // its route has message filters, so that plain sessions stay small.
  struct FlowFilters {
    // A gateway ping toward the destination, waiting for a frame boundary (ping_size 0: none).
    // Kept here, not allocated: keepalive on idle sessions costs no allocation per ping.
    std::array<uint8_t, kPongFrameMax> ping{};
    uint8_t ping_size = 0;

    // A pong from the source that may answer the gateway's ping is held back whole (header and
    // payload, at most kPongFrameMax bytes) until its payload shows whose it is.
    bool pong_held = false;
    uint8_t pong_size = 0;
    std::array<uint8_t, kPongFrameMax> pong{};

    // Throttled by a filter: the source is read again no sooner than this.
    Clock::time_point resume_at{};
    Clock::time_point throttled_since{};
    bool throttle_hit = false;  // a filter throttled the frame being consumed
    bool source_ended = false;  // the read being consumed came with the source's end
    // What a read brought behind the frame that drew a throttle: handled when the throttle
    // ends, before the source is read again. At most one read; allocated only while held.
    std::unique_ptr<uint8_t[]> backlog;
    size_t backlog_size = 0;
    size_t backlog_capacity = 0;
    Cell* throttled_us = nullptr;  // looked up at the first throttle
    // Filters (bit i: filter i) that asked to see the current frame's payload, and how to
    // unmask it.
    uint64_t inspecting = 0;
    filters::FrameEvent inspected{};
    bool inspect_masked = false;
    std::array<uint8_t, 4> inspect_mask{};
    uint64_t inspect_offset = 0;
  };
  struct LegFilters {
    bool ping_unanswered = false;  // the gateway's ping to it awaits its pong
    Cell* pings = nullptr;         // looked up at the first ping
    std::array<uint8_t, kPingPayloadSize> ping_payload{};
  };
  struct FilterState {
    std::array<FlowFilters, 2> flows;
    std::array<LegFilters, 2> legs;
  };

  // Flow `f` reads leg `f` and writes leg `1 - f`.
  struct Flow {
    Flow(bool from_client, bool allow_rsv1) : sequencer(from_client, allow_rsv1) {}

    FrameHeaderParser parser;
    FrameSequencer sequencer;
    Mode mode = Mode::kRelay;
    uint64_t remaining = 0;  // payload bytes of the current frame still to come
    bool waiting_read = false;  // a read is outstanding

    // Where the waiting read lands while the flow is quiet: small enough to keep per session,
    // big enough for a typical small message, so most wake-ups cost one recv and no epoll_ctl.
    std::array<uint8_t, kLandingSize> landing{};
    // Lent while the flow is busy: reads go here instead of the landing slot.
    std::unique_ptr<uint8_t[]> lent;
    bool lent_used = false;  // a read landed in `lent` since the last sweep
    uint8_t quiet_reads = 0;  // reads in a row into `lent` that the landing slot would have held
    bool reclaiming = false;  // the read into `lent` was cancelled to give it back

    // The first two payload bytes of a close frame from the source: its code, for metrics.
    bool capturing = false;
    uint8_t captured = 0;
    std::array<uint8_t, 2> control{};
    bool control_masked = false;
    std::array<uint8_t, 4> control_mask{};

    // Header bytes that arrived in an earlier read, forwarded with the rest of the header.
    std::array<uint8_t, kMaxFrameHeaderSize> held{};
    uint8_t held_size = 0;

    // Bytes the destination could not take yet; empty (no allocation) while idle.
    std::unique_ptr<uint8_t[]> pending;
    size_t pending_size = 0;
    size_t pending_offset = 0;

    // A gateway close frame to write toward the destination at the next frame boundary;
    // allocated only while queued.
    std::unique_ptr<ControlFrame> inject;
    // What only sessions with message filters need (else null): see FlowFilters.
    FlowFilters* fx = nullptr;

    Cell* frames = nullptr;
    Cell* messages = nullptr;
    Cell* bytes = nullptr;
    Cell* pauses = nullptr;
    Cell* protocol_errors = nullptr;
  };

  // Per leg: what the closing handshake has seen.
  struct LegState {
    bool close_received = false;  // the leg sent a close frame
    bool close_queued = false;    // a close toward the leg was forwarded or queued
    bool lost = false;            // the leg's connection ended or failed
    bool eof = false;             // the leg's peer closed its side of the connection
    bool held_back = false;       // the last write to it left its tail for a FIN (`more`)
    LegFilters* lx = nullptr;  // only with message filters: see LegFilters
  };

  struct FilterSlot {
    std::unique_ptr<filters::MessageFilter> filter;
    std::string_view name;  // the metric label
    Clock::time_point wake = kNever;
  };


  void resumeRead(int f);
  void armRead(int f);
  void onLanded(int f, const boost::system::error_code& ec, size_t n);
  // Reads what follows `n` landed bytes of a full slot, behind them; returns the bytes now there.
  std::span<const uint8_t> drainBehindLanding(int f, size_t n, boost::system::error_code& ec);
  bool returnIdleBuffers() override;
  void returnLent(Flow& flow);
  void consume(int f, const uint8_t* data, size_t size);
  // Header checks and filters for a complete header in relay mode; false if it ended the relay.
  bool admitHeader(int f, const FrameHeader& header);
  // Shows inspecting filters a piece of the current frame's payload; false if one closed.
  bool inspectPayload(int f, const uint8_t* data, size_t size, bool frame_end);
  // A filter's verdict to close flow `f`'s source (counted and logged).
  void filterCloses(int f, size_t index, const filters::FrameVerdict& verdict);
  // Whether the held-back pong of flow `f` (complete) answers the gateway's ping.
  bool heldPongIsOurs(int f) const;
  void onFrameEnd(int f);
  void capture(Flow& flow, const uint8_t* data, size_t size);

  // Writes `parts` toward leg `1 - f`, keeping what the socket cannot take; false (nothing
  // written) while earlier bytes are still pending.
  bool emit(int f, std::span<const boost::asio::const_buffer> parts, bool last = false);
  void keepPending(Flow& flow, std::span<const boost::asio::const_buffer> parts, size_t skip);
  void writePending(int f);
  void onPendingWritten(int f, const boost::system::error_code& ec, size_t n);

  // Queues a gateway close toward `leg`, written at the next boundary of the flow into it.
  void queueClose(int leg, uint16_t code, std::string_view reason);
  // The source of flow `f` broke the protocol or a filter: close it with `code`, and the other
  // leg with 1001.
  void rejectSource(int f, uint16_t code, std::string_view reason);
  void onLegLost(int leg, const boost::system::error_code& ec);
  void watchClientAfterClose();
  bool clientGoneAfterClose();
  void dropClient();
  // True when flow `f` has a close or ping queued and its output is at a frame boundary.
  bool injectReady(const Flow& flow) const {
    const FlowFilters* fx = flow.fx;
    return (flow.inject || (fx && fx->ping_size != 0)) && !(fx && fx->pong_held) &&
           (flow.mode != Mode::kRelay || flow.remaining == 0);
  }
  // Writes the queued ping, then the queued close, of flow `f` (injectReady must hold), after
  // `parts` if given.
  void sendInject(int f, std::span<const boost::asio::const_buffer> before = {});
  void startCloseTimer();
  static void closeTimedOut(void* session);
  // The session's one timer, armed for the earliest of its deadlines.
  Clock::time_point nextDeadline() const;
  void armTimer();     // at the end of the current step (guarded), else now
  void armTimerNow();
  void onTimer(const boost::system::error_code& ec);
  // Whether flow `f`'s source must wait (then the timer is armed for it).
  bool throttled(int f);
  // Consumes flow `f`'s backlog (a throttle may keep part of it again).
  void consumeBacklog(int f);
  void endThrottle(int f, Clock::time_point now);

  // SessionControl, for the filters.
  bool ping(filters::Side side) override;
  // Also LiveSession's: a drain asks a session to go away the same way a filter does.
  void goAway(uint16_t code, std::string_view reason) override;
  std::string_view listenerName() const override { return record_.listener(); }
  std::string_view routeName() const override { return setup_.route->name; }
  void abandon(filters::Side side, std::string_view reason) override;
  void wakeAt(Clock::time_point when) override;
  void maybeFinish();
  // After its closing handshake, waits for the backend to close the TCP connection first (RFC
  // 6455 §7.1.1: the server closes first and keeps TIME_WAIT); bounded by the close timer. On
  // the client leg, after the client's close: whether it leaves before the reply.
  void awaitEof(int leg);
  void onEofWait(int leg, const boost::system::error_code& ec);
  void finish(std::string_view why);
  void closeLeg(int leg);

  // A failure (an exception) ends this session only. Every entry point from the event loop runs
  // its step through guarded(), which turns what escapes into fail().
  // The timer is armed as the outermost step ends (armTimer() only asks for it): a session that
  // sets a deadline and ends in the same wake-up, as one whose client closes and leaves at once
  // does, arms and cancels no timer.
  template <typename Step>
  void guarded(Step&& step) noexcept {
    ++step_depth_;
    try {
      step();
      if (step_depth_ == 1 && timer_wanted_) armTimerNow();
    } catch (const std::exception& e) {
      fail(e.what());
    } catch (...) {
      fail("unknown exception");
    }
    --step_depth_;
  }
  static filters::Direction directionOf(int flow) {
    return flow == 0 ? filters::Direction::kClientToUpstream
                     : filters::Direction::kUpstreamToClient;
  }
  // A filter threw on a header of flow `f`: nothing of that frame went out, so the session
  // closes at the frame boundary as a rejection does, with 1011 both ways.
  void failAtBoundary(int f, std::string_view what);
  // A filter's verdict from `call`; a filter that throws fails the session at this boundary
  // (failAtBoundary) and gives none.
  template <typename Call>
  std::optional<filters::FrameVerdict> askFilter(int f, Call&& call) {
    try {
      return call();
    } catch (const std::exception& e) {
      failAtBoundary(f, e.what());
    } catch (...) {
      failAtBoundary(f, "unknown exception from a filter");
    }
    return std::nullopt;
  }
  // A step threw partway: a 1011 close goes to each leg whose output is at a frame boundary,
  // then both sockets close.
  void fail(std::string_view what) noexcept;
  void countFailure(std::string_view what) noexcept;

  static std::string_view legName(int leg) { return leg == kClient ? "client" : "upstream"; }
  // `code_label` is closeCodeLabel()'s: never a value taken from the peer as is.
  void countClose(std::string_view side, std::string_view code_label);

  WorkerContext& worker_;
  std::array<Stream, 2> legs_;
  SessionSetup setup_;
  ConnectionRecord record_;
  std::array<Flow, 2> flows_;
  std::array<LegState, 2> leg_state_;
  std::vector<FilterSlot> filters_;
  std::unique_ptr<FilterState> filter_state_;  // null without message filters
  size_t current_filter_ = 0;  // the filter being called (whose wakeAt it is)
  // Made on the first deadline: a session that never sets one (nor its end) builds no timer.
  std::optional<boost::asio::steady_timer> timer_;
  Clock::time_point armed_for_ = kNever;  // when the timer's pending wait fires
  // The closing handshake's bound: close_timeout, kept in the worker's Deadlines.
  Deadlines::Entry close_deadline_;
  Clock::time_point last_activity_;
  Clock::time_point started_;
  Clock::time_point read_time_;  // the clock at the current consume(), for filters
  bool closing_ = false;  // close deadline set: the session is ending
  bool timer_wanted_ = false;  // armTimer() was asked during the current step
  int step_depth_ = 0;  // guarded() steps under way (a step may run another)
  bool finished_ = false;
  bool client_gone_ = false;  // the client's end of stream was read after its close
  bool in_consume_ = false;  // consume() of `consuming_flow_` is building its output
  int consuming_flow_ = 0;
};

}  // namespace wsgate::gateway
