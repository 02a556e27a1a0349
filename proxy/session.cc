#include "proxy/session.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "io/lingering_close.h"

namespace wsgate::gateway {

namespace {

using boost::asio::const_buffer;
using boost::system::error_code;

}  // namespace

Session::Session(WorkerContext& worker, Stream client, Stream upstream, SessionSetup setup,
                 ConnectionRecord record)
    : worker_(worker),
      legs_{{std::move(client), std::move(upstream)}},
      setup_(std::move(setup)),
      record_(std::move(record)),
      flows_{{Flow(true, setup_.permessage_deflate), Flow(false, setup_.permessage_deflate)}},
      close_deadline_(&Session::closeTimedOut, this),
      last_activity_(Clock::now()),
      started_(last_activity_) {
  const auto& cells = worker_.stats.routeCells(setup_.route->name);
  for (int f = 0; f < 2; ++f) {
    Flow& flow = flows_[f];
    flow.frames = cells[f].frames;
    flow.messages = cells[f].messages;
    flow.bytes = cells[f].bytes;
    flow.pauses = cells[f].pauses;
    flow.protocol_errors = cells[f].protocol_errors;
  }
  const filters::SessionContext context{setup_.route->name, setup_.client_address, started_,
                                        this};
  for (const auto& spec : setup_.route->filters) {
    const auto* factory = static_cast<const filters::FilterFactory*>(spec.built.get());
    if (auto filter = factory->newMessageFilter(context)) {
      filters_.push_back({std::move(filter), factory->name()});
    }
  }
  if (!filters_.empty()) {
    filter_state_ = std::make_unique<FilterState>();
    for (int i = 0; i < 2; ++i) {
      flows_[i].fx = &filter_state_->flows[i];
      leg_state_[i].lx = &filter_state_->legs[i];
    }
  }
}

Session::~Session() {
  if (worker_.live) worker_.live->gone(*this);
  for (Flow& flow : flows_) returnLent(flow);
  if (spdlog::should_log(spdlog::level::debug)) {  // spares a clock read otherwise
    const auto lived = Clock::now() - started_;
    spdlog::debug("session ended: route={} client={} duration={}ms", setup_.route->name,
                  setup_.client_address,
                  std::chrono::duration_cast<std::chrono::milliseconds>(lived).count());
  }
}

void Session::start(std::span<const uint8_t> client_early,
                    std::span<const uint8_t> upstream_early) {
  record_.setOutcome(outcome::kRelayed);
  if (worker_.live) worker_.live->add(*this);
  guarded([&] {
    for (size_t i = 0; i < filters_.size() && !finished_; ++i) {
      current_filter_ = i;
      filters_[i].filter->onStart(started_);
    }
    current_filter_ = filters_.size();
    armTimer();
    if (!client_early.empty()) consume(kClient, client_early.data(), client_early.size());
    if (!upstream_early.empty()) consume(kUpstream, upstream_early.data(), upstream_early.size());
    resumeRead(kClient);
    resumeRead(kUpstream);
  });
}

void Session::resumeRead(int f) {
  Flow& flow = flows_[f];
  if (finished_ || flow.waiting_read || flow.mode == Mode::kDone || flow.pending_size != 0) {
    return;
  }
  if (flow.fx) {
    if (flow.fx->resume_at != Clock::time_point{} && throttled(f)) return;
    if (flow.fx->backlog_size != 0) return consumeBacklog(f);
  }
  armRead(f);
}

// The read is tried at once unless the last one drained the socket (draining_read.h); then it
// waits for epoll's edge without re-arming the descriptor.
void Session::armRead(int f) {
  Flow& flow = flows_[f];
  flow.waiting_read = true;
  const auto buffer = flow.lent ? boost::asio::buffer(flow.lent.get(), RelayBuffers::kBufferSize)
                                : boost::asio::buffer(flow.landing);
  legs_[f].asyncReadSome(buffer, [self = shared_from_this(), f](const error_code& ec, size_t n) {
    self->guarded([&] { self->onLanded(f, ec, n); });
  });
}

void Session::onLanded(int f, const error_code& ec, size_t n) {
  Flow& flow = flows_[f];
  flow.waiting_read = false;
  if (std::exchange(flow.reclaiming, false) && ec == boost::asio::error::operation_aborted) {
    returnLent(flow);
    return resumeRead(f);
  }
  if (finished_) return;
  if (ec) return onLegLost(f, ec);
  if (setup_.route->idle_timeout.count() > 0) last_activity_ = std::chrono::steady_clock::now();
  if (flow.lent) {
    flow.lent_used = true;
    consume(f, flow.lent.get(), n);
    flow.quiet_reads = n <= kLandingSize ? flow.quiet_reads + 1 : 0;
    if (flow.quiet_reads >= kQuietReadsToReturn) returnLent(flow);
  } else if (n < kLandingSize) {
    consume(f, flow.landing.data(), n);  // it all fit the slot: one read for this wake-up
  } else {
    error_code more_ec;
    const std::span<const uint8_t> data = drainBehindLanding(f, n, more_ec);
    // The source ended behind these bytes: nothing may wait behind a throttle, since its loss
    // below ends the flow.
    if (flow.fx) flow.fx->source_ended = more_ec && more_ec != boost::asio::error::would_block;
    consume(f, data.data(), data.size());
    if (more_ec && more_ec != boost::asio::error::would_block) return onLegLost(f, more_ec);
  }
  if (flow.mode == Mode::kDone) {
    returnLent(flow);
    if (f == kClient && leg_state_[kClient].close_received) watchClientAfterClose();
  }
  resumeRead(f);
}

// Many clients send their close and end the connection at once (apps sent to the background,
// crashed tabs). Such a client takes no reply: writing one into its closed socket only makes its
// kernel answer with a reset. So once the client's close is in, its end of stream is watched for
// (often it came with the close, in the same read); if it comes before the reply, the client's
// leg is closed with no reply. The backend still gets the client's close and the gateway still
// completes that closing handshake. A client that waits for the reply costs one read that waits
// for an edge without a system call, cancelled when its leg closes.
void Session::watchClientAfterClose() {
  if (finished_ || leg_state_[kClient].lost) return;
  if (clientGoneAfterClose()) return dropClient();
  awaitEof(kClient);
}

// Whether the client ended its connection after its close (read once, then remembered). The
// scratch buffer is not the landing slot: the close being relayed may still be there.
bool Session::clientGoneAfterClose() {
  if (!client_gone_) {
    std::array<uint8_t, 64> scratch;
    client_gone_ = legs_[kClient].peerEnded(boost::asio::buffer(scratch));
  }
  return client_gone_;
}

void Session::dropClient() {
  leg_state_[kClient].eof = true;
  onLegLost(kClient, boost::asio::error::eof);
  if (finished_) return;
  legs_[kClient].cancel();
  legs_[kClient].close();
}

std::span<const uint8_t> Session::drainBehindLanding(int f, size_t n, error_code& ec) {
  Flow& flow = flows_[f];
  // Busy from now on: borrow a buffer so that the next wake-ups read straight into it.
  if (!flow.lent) {
    flow.lent = worker_.buffers.lend(*this);
    flow.lent_used = true;
  }
  const std::span<uint8_t> into =
      flow.lent ? std::span<uint8_t>(flow.lent.get(), RelayBuffers::kBufferSize)
                : worker_.read_buffer;
  std::memcpy(into.data(), flow.landing.data(), n);
  const size_t more = legs_[f].readSome(boost::asio::buffer(into.data() + n, into.size() - n), ec);
  return into.first(n + more);
}

void Session::returnLent(Flow& flow) {
  if (flow.lent) worker_.buffers.giveBack(std::move(flow.lent));
  flow.lent_used = false;
  flow.quiet_reads = 0;
}

// Called once a sweep interval. A flow that read nothing into its lent buffer since the last
// sweep gives it back: at once when no read owns it, else by cancelling the read (only when no
// write is outstanding on that socket, since a cancel ends both) and re-arming on the slot.
bool Session::returnIdleBuffers() {
  bool holding = false;
  for (int f = 0; f < 2; ++f) {
    Flow& flow = flows_[f];
    if (!flow.lent) continue;
    if (std::exchange(flow.lent_used, false) || flow.reclaiming || finished_) {
      holding = true;
    } else if (!flow.waiting_read) {
      returnLent(flow);
    } else if (flows_[1 - f].pending_size == 0) {
      flow.reclaiming = true;
      legs_[f].cancel();
      holding = true;
    } else {
      holding = true;
    }
  }
  return holding;
}

// What goes on is a few runs of `data` in order: a pong the gateway consumes is cut out, and a
// queued ping is put between two frames. Every part is written with one call at the end.
void Session::consume(int f, const uint8_t* data, size_t size) {
  Flow& flow = flows_[f];
  in_consume_ = true;
  consuming_flow_ = f;
  if (!filters_.empty()) read_time_ = Clock::now();  // one clock read per wake-up, not per frame
  bool forwarding = flow.mode == Mode::kRelay;
  std::array<const_buffer, 10> parts;
  size_t count = 0;
  size_t run_start = 0;
  size_t forward_end = 0;
  size_t gateway_bytes = 0;                  // of the parts: frames of the gateway's own
  bool frame_here = false;                   // the current frame began in this read
  size_t frame_start = 0;
  size_t frame_first_part = 0;
  bool cut_destination = false;  // a frame partly forwarded was refused: its rest never comes
  size_t pos = 0;
  auto closeRun = [&] {
    if (forward_end > run_start) parts[count++] = {data + run_start, forward_end - run_start};
    run_start = forward_end;
  };
  // A filter refused the current frame after seeing some of its payload.
  auto refuseFrame = [&] {
    if (frame_here) {  // nothing of it is written yet: it goes nowhere
      count = frame_first_part;
      forward_end = frame_start;
      run_start = std::min(run_start, frame_start);
    } else {
      cut_destination = true;
    }
    forwarding = false;
  };
  bool hold_rest = false;  // a throttle: what follows this frame waits for its time
  auto frameEnded = [&] {
    onFrameEnd(f);
    if (flow.fx && std::exchange(flow.fx->throttle_hit, false) && flow.mode == Mode::kRelay &&
        !flow.fx->source_ended) {
      hold_rest = true;
    }
    if (flow.fx && flow.fx->pong_held) {
      flow.fx->pong_held = false;
      if (heldPongIsOurs(f)) {
        leg_state_[f].lx->ping_unanswered = false;
      } else {
        parts[count++] = {flow.fx->pong.data(), flow.fx->pong_size};
      }
      run_start = forward_end = pos;
    }
    if (flow.fx && flow.fx->ping_size != 0 && forwarding && flow.mode == Mode::kRelay &&
        count + 5 <= parts.size()) {
      closeRun();
      // The bytes stay in fx->ping until the write below has taken or copied them.
      parts[count++] = {flow.fx->ping.data(), flow.fx->ping_size};
      gateway_bytes += std::exchange(flow.fx->ping_size, 0);
    }
  };
  flow.held_size = 0;
  while (pos < size && flow.mode != Mode::kDone && !hold_rest) {
    if (flow.remaining > 0) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(flow.remaining, size - pos));
      if (flow.capturing) capture(flow, data + pos, take);
      const bool last = take == flow.remaining;
      if (flow.fx && flow.fx->pong_held) {
        std::memcpy(flow.fx->pong.data() + flow.fx->pong_size, data + pos, take);
        flow.fx->pong_size = static_cast<uint8_t>(flow.fx->pong_size + take);
      } else if (flow.fx && flow.fx->inspecting != 0 && forwarding &&
                 !inspectPayload(f, data + pos, take, last)) {
        refuseFrame();
      }
      pos += take;
      flow.remaining -= take;
      if (forwarding && !(flow.fx && flow.fx->pong_held)) forward_end = pos;
      if (flow.remaining == 0) frameEnded();
    } else {
      const size_t header_from = pos;
      const size_t earlier = flow.parser.buffered();
      pos += flow.parser.feed(data + pos, size - pos);
      if (!flow.parser.complete()) break;  // the rest of the header comes with the next read
      const FrameHeader header = flow.parser.header();
      bool watch_close = true;
      if (flow.parser.invalid()) {
        if (forwarding) {
          flow.protocol_errors->add(1);
          rejectSource(f, 1002, "invalid frame length");
        }
        // Framing is lost: no later frame (nor a close reply) can be found. Stop reading.
        flow.mode = Mode::kDone;
        leg_state_[f].close_received = true;
        break;
      }
      frame_here = true;
      frame_start = header_from;
      frame_first_part = count;
      if (forwarding) {
        if (admitHeader(f, header)) {
          if (flow.fx && header.opcode == opcode::kPong && header.payload_length == kPingPayloadSize &&
              leg_state_[f].lx->ping_unanswered) {
            // Perhaps the answer to the gateway's ping: held back until its payload tells.
            closeRun();
            const auto raw = flow.parser.raw();
            std::memcpy(flow.fx->pong.data(), raw.data(), raw.size());
            flow.fx->pong_size = static_cast<uint8_t>(raw.size());
            flow.fx->pong_held = true;
          } else {
            if (earlier > 0) {
              std::memcpy(flow.held.data(), flow.parser.raw().data(), earlier);
              flow.held_size = static_cast<uint8_t>(earlier);
              parts[count++] = {flow.held.data(), earlier};
            }
            forward_end = pos;
          }
        } else {
          watch_close = false;  // the rejected frame's payload is skipped
          if (header.opcode == opcode::kClose) {
            // Refused or not, a close is the peer's last frame: no reply to ours will follow.
            countClose(legName(f), kInvalidCloseLabel);
            flow.mode = Mode::kDone;
            leg_state_[f].close_received = true;
            break;
          }
        }
      }
      flow.parser.reset();
      flow.remaining = header.payload_length;
      flow.capturing = watch_close && header.opcode == opcode::kClose;
      if (flow.capturing) {
        flow.captured = 0;
        flow.control_masked = header.masked;
        flow.control_mask = header.mask_key;
      }
      if (flow.fx && flow.fx->inspecting != 0) {
        flow.fx->inspect_masked = header.masked;
        flow.fx->inspect_mask = header.mask_key;
        flow.fx->inspect_offset = 0;
        if (flow.remaining == 0 && forwarding && !inspectPayload(f, nullptr, 0, true)) {
          refuseFrame();
        }
      }
      if (flow.remaining == 0) frameEnded();
    }
    if (flow.mode != Mode::kRelay) forwarding = false;
  }
  in_consume_ = false;
  closeRun();

  size_t total = 0;
  for (size_t i = 0; i < count; ++i) total += parts[i].size();
  // Counted from the bytes handed on, not from the lengths headers declare: a peer cannot
  // inflate the counter with a header it never follows up.
  if (total > gateway_bytes && !leg_state_[1 - f].lost) {
    flow.bytes->add(static_cast<int64_t>(total - gateway_bytes));
  }
  if (injectReady(flow)) {
    sendInject(f, {parts.data(), count});
  } else if (count > 0) {
    // The backend's close that completes the client's closing handshake: maybeFinish closes
    // the client right after it, and the FIN goes out in the same segment.
    const LegState& client = leg_state_[kClient];
    bool last = f == kUpstream && flow.mode == Mode::kDone && client.close_received &&
                client.close_queued && !flows_[kUpstream].inject;
    // The client's close, when the client is already gone: maybeFinish closes the backend's
    // leg right after it, so its FIN goes out with it. Unless the backend has sent bytes nobody
    // read (closing would then reset the leg and lose the close): maybeFinish finds them, keeps
    // the leg open and pushes the close out at once.
    if (f == kClient && flow.mode == Mode::kDone && client.close_received && !flow.inject &&
        !leg_state_[kUpstream].close_received && clientGoneAfterClose()) {
      last = true;
      leg_state_[kUpstream].held_back = true;
    }
    emit(f, {parts.data(), count}, last);
  }
  // After the write: `data` may be the backlog itself, which this reuses.
  if (hold_rest && pos < size) {
    FlowFilters& fx = *flow.fx;
    const size_t rest = size - pos;
    if (fx.backlog && fx.backlog_capacity >= rest) {
      std::memmove(fx.backlog.get(), data + pos, rest);
    } else {
      auto buffer = std::make_unique<uint8_t[]>(rest);
      std::memcpy(buffer.get(), data + pos, rest);
      fx.backlog = std::move(buffer);
      fx.backlog_capacity = rest;
    }
    fx.backlog_size = rest;
  }
  if (cut_destination) {
    // The destination has part of a frame whose rest will never come: no frame can follow on
    // that connection, not even a close. It is closed; the source still gets its close.
    spdlog::debug("route {}: a frame to {} was refused partway; its connection is closed",
                  setup_.route->name, legName(1 - f));
    onLegLost(1 - f, boost::asio::error::connection_aborted);
    if (!finished_) closeLeg(1 - f);
  }
  maybeFinish();
}

bool Session::admitHeader(int f, const FrameHeader& header) {
  Flow& flow = flows_[f];
  if (const char* violation = flow.sequencer.check(header)) {
    flow.protocol_errors->add(1);
    spdlog::debug("protocol error from {} on route {}: {}", legName(f), setup_.route->name,
                  violation);
    rejectSource(f, 1002, violation);
    return false;
  }
  if (!filters_.empty()) {
    const filters::FrameEvent event{
        Session::directionOf(f),
        header.opcode,
        header.fin,
        !header.isControl() && flow.sequencer.compressed(),
        header.payload_length,
        header.isControl() ? 0 : flow.sequencer.messageLength(),
        read_time_,
    };
    flow.fx->inspecting = 0;
    for (size_t i = 0; i < filters_.size(); ++i) {
      current_filter_ = i;
      const auto verdict = askFilter(f, [&] { return filters_[i].filter->onFrame(event); });
      if (!verdict) return false;
      switch (verdict->kind()) {
        case filters::FrameVerdict::Kind::kClose:
          filterCloses(f, i, *verdict);
          return false;
        case filters::FrameVerdict::Kind::kThrottle:
          flow.fx->resume_at = std::max(flow.fx->resume_at, verdict->until());
          flow.fx->throttle_hit = true;
          break;
        case filters::FrameVerdict::Kind::kInspect:
          if (i < 64) flow.fx->inspecting |= uint64_t{1} << i;
          break;
        case filters::FrameVerdict::Kind::kContinue:
          break;
      }
      if (finished_ || flow.mode != Mode::kRelay) return false;
    }
    if (flow.fx->inspecting != 0) flow.fx->inspected = event;
  }
  flow.frames->add(1);
  if (!header.isControl() && flow.sequencer.messageEnded()) flow.messages->add(1);
  return true;
}

void Session::capture(Flow& flow, const uint8_t* data, size_t size) {
  const size_t n = std::min(size, flow.control.size() - flow.captured);
  std::memcpy(flow.control.data() + flow.captured, data, n);
  flow.captured = static_cast<uint8_t>(flow.captured + n);
}

void Session::onFrameEnd(int f) {
  Flow& flow = flows_[f];
  if (flow.capturing) {
    flow.capturing = false;
    if (flow.control_masked) {
      applyMask(flow.control.data(), flow.captured, flow.control_mask, 0);
    }
    const uint16_t code = closeCode({flow.control.data(), flow.captured});
    countClose(legName(f), closeCodeLabel(code));
    leg_state_[f].close_received = true;
    if (flow.mode == Mode::kRelay) leg_state_[1 - f].close_queued = true;  // forwarded
    flow.mode = Mode::kDone;  // nothing may follow a close frame
    startCloseTimer();
  }
  // A gateway close waits for this boundary: stop forwarding here.
  if (flow.inject && flow.mode == Mode::kRelay) flow.mode = Mode::kDiscard;
}

bool Session::emit(int f, std::span<const const_buffer> parts, bool last) {
  if (finished_) return true;
  Flow& flow = flows_[f];
  const int to = 1 - f;
  if (leg_state_[to].lost) return true;
  if (flow.pending_size != 0) return false;  // only a drained flow takes new bytes
  size_t total = 0;
  for (const auto& part : parts) total += part.size();
  if (total == 0) return true;
  error_code ec;
  size_t written = legs_[to].writeSome(parts, ec, last);
  if (ec == boost::asio::error::would_block) {
    written = 0;
  } else if (ec) {
    onLegLost(to, ec);
    return true;
  }
  if (written == total) return true;
  keepPending(flow, parts, written);
  flow.pauses->add(1);
  writePending(f);
  return true;
}

void Session::keepPending(Flow& flow, std::span<const const_buffer> parts, size_t skip) {
  size_t size = 0;
  for (const auto& part : parts) size += part.size();
  size -= skip;
  flow.pending = std::make_unique<uint8_t[]>(size);
  size_t at = 0;
  for (const auto& part : parts) {
    const auto* bytes = static_cast<const uint8_t*>(part.data());
    const size_t drop = std::min(skip, part.size());
    skip -= drop;
    std::memcpy(flow.pending.get() + at, bytes + drop, part.size() - drop);
    at += part.size() - drop;
  }
  flow.pending_size = size;
  flow.pending_offset = 0;
}

// The pending bytes are the flow's own buffer, so Asio's write (speculative, edge-safe) can
// own them until it completes.
void Session::writePending(int f) {
  Flow& flow = flows_[f];
  legs_[1 - f].asyncWriteSome(
      boost::asio::buffer(flow.pending.get() + flow.pending_offset,
                          flow.pending_size - flow.pending_offset),
      [self = shared_from_this(), f](const error_code& ec, size_t n) {
        self->guarded([&] { self->onPendingWritten(f, ec, n); });
      });
}

void Session::onPendingWritten(int f, const error_code& ec, size_t n) {
  if (finished_) return;
  Flow& flow = flows_[f];
  if (flow.pending_size == 0) return;  // dropped meanwhile (destination lost)
  if (ec) return onLegLost(1 - f, ec);
  flow.pending_offset += n;
  if (flow.pending_offset < flow.pending_size) return writePending(f);
  flow.pending.reset();
  flow.pending_size = flow.pending_offset = 0;
  if (injectReady(flow)) sendInject(f);
  maybeFinish();
  resumeRead(f);
}

void Session::queueClose(int leg, uint16_t code, std::string_view reason) {
  if (finished_) return;
  LegState& state = leg_state_[leg];
  if (state.lost || state.close_queued) return;
  state.close_queued = true;
  const int f = 1 - leg;  // the flow that writes into `leg`
  Flow& flow = flows_[f];
  flow.inject = std::make_unique<ControlFrame>(makeCloseFrame(code, reason, leg == kUpstream));
  countClose("gateway", closeCodeLabel(code));
  startCloseTimer();
  // A throttled leg must be read again for its close reply to come in.
  if (flows_[leg].fx && flows_[leg].fx->resume_at != Clock::time_point{}) {
    flows_[leg].fx->resume_at = Clock::now();
    armTimer();
  }
  if (in_consume_ && consuming_flow_ == f) return;  // consume() injects at its boundary
  if (flow.pending_size != 0) return;                 // written once the pending bytes drain
  if (injectReady(flow)) sendInject(f);               // else onFrameEnd stops at the boundary
}

void Session::sendInject(int f, std::span<const const_buffer> before) {
  Flow& flow = flows_[f];
  const size_t ping_size = flow.fx ? std::exchange(flow.fx->ping_size, 0) : 0;
  const std::unique_ptr<ControlFrame> close = std::move(flow.inject);
  if (close && flow.mode == Mode::kRelay) flow.mode = Mode::kDiscard;  // nothing follows a close
  std::array<const_buffer, 12> parts;
  size_t count = 0;
  for (const auto& part : before) parts[count++] = part;
  if (ping_size != 0) parts[count++] = {flow.fx->ping.data(), ping_size};
  if (close) parts[count++] = {close->bytes.data(), close->size};
  emit(f, {parts.data(), count});
}

void Session::rejectSource(int f, uint16_t code, std::string_view reason) {
  queueClose(f, code, reason);
  queueClose(1 - f, 1001, f == kClient ? "client closed by gateway" : "upstream closed by gateway");
  if (flows_[f].mode == Mode::kRelay) flows_[f].mode = Mode::kDiscard;  // await its close
}

void Session::onLegLost(int leg, const error_code& ec) {
  if (finished_) return;
  LegState& state = leg_state_[leg];
  if (state.lost) return;
  state.lost = true;
  Flow& from = flows_[leg];
  Flow& into = flows_[1 - leg];
  into.pending.reset();  // nothing more can reach the lost leg
  into.pending_size = into.pending_offset = 0;
  into.inject.reset();
  if (into.fx) into.fx->ping_size = 0;
  if (!state.close_received) {
    const bool clean = !ec || ec == boost::asio::error::eof;
    spdlog::debug("{} left route {} without a close frame: {}", legName(leg), setup_.route->name,
                  clean ? "end of stream" : ec.message());
    if (from.mode == Mode::kRelay && from.remaining > 0) return finish("lost mid-frame");
    from.mode = Mode::kDone;
    if (into.mode == Mode::kRelay) into.mode = Mode::kDiscard;
    queueClose(1 - leg, clean ? 1001 : 1011,
               leg == kClient ? "client went away" : "upstream went away");
  } else {
    from.mode = Mode::kDone;
  }
  maybeFinish();
  resumeRead(1 - leg);  // it may have been paused on a write to the lost leg
}

// A leg whose closing handshake is complete (its close received, ours or the forwarded one fully
// written) is closed without waiting for the other leg's: a backend is not held open while a
// client takes its time to answer a gateway close. The client leg is closed at once (the
// gateway is its server); the upstream leg once the backend has closed its side, or as soon as
// the backend has its close when the client is gone.
void Session::maybeFinish() {
  if (finished_) return;
  bool all_done = true;
  for (int leg = 0; leg < 2; ++leg) {
    LegState& state = leg_state_[leg];
    if (state.lost) continue;
    const Flow& into = flows_[1 - leg];
    all_done = false;
    if (!state.close_queued || into.pending_size != 0 || into.inject) continue;
    if (leg == kUpstream && !state.close_received && leg_state_[kClient].lost) {
      if (!legs_[kUpstream].mayHaveUnread()) {
        // The client is gone and the backend has its close: whatever the backend answers has
        // nowhere to go. The leg closes right behind that close, as a tunnel would, in the same
        // wake-up; the backend's reply then meets a closed socket, whose reset ends the
        // connection on both sides without a TIME_WAIT on the gateway's port.
        state.lost = true;
        closeLeg(leg);
        continue;
      }
      // The leg stays open for its closing handshake: the close must not wait for a FIN.
      if (std::exchange(state.held_back, false)) legs_[kUpstream].push();
    }
    if (!state.close_received) continue;
    if (leg == kUpstream && !state.eof) {
      awaitEof(leg);
      continue;
    }
    state.lost = true;  // nothing more is read from or written to it
    closeLeg(leg);
  }
  if (all_done || (leg_state_[kClient].lost && leg_state_[kUpstream].lost)) finish("closed");
}

void Session::awaitEof(int leg) {
  Flow& flow = flows_[leg];
  if (flow.waiting_read) return;
  flow.waiting_read = true;
  legs_[leg].asyncReadSome(boost::asio::buffer(flow.landing),
                           [self = shared_from_this(), leg](const error_code& ec, size_t) {
                             self->guarded([&] { self->onEofWait(leg, ec); });
                           });
}

void Session::onEofWait(int leg, const error_code& ec) {
  flows_[leg].waiting_read = false;
  if (finished_ || leg_state_[leg].lost) return;
  if (!ec) return awaitEof(leg);  // bytes after a close frame mean nothing: drop them
  if (ec == boost::asio::error::operation_aborted) return;
  if (leg == kClient) return dropClient();  // it left without awaiting the reply
  leg_state_[leg].eof = true;  // end of stream, or a reset: either way the peer is done
  maybeFinish();
}

void Session::finish(std::string_view why) {
  if (finished_) return;
  finished_ = true;
  if (worker_.live) worker_.live->gone(*this);
  spdlog::debug("session on route {} for {} finished: {}", setup_.route->name,
                setup_.client_address, why);
  if (timer_) timer_->cancel();
  armed_for_ = kNever;
  worker_.deadlines.disarm(close_deadline_);
  if (!leg_state_[kClient].lost) {
    legs_[kClient].cancel();  // a lingering close takes the socket: no operation may stay on it
    LingeringClose::close(legs_[kClient]);
  }
  for (auto& leg : legs_) leg.close();
}

// The client leg lingers if the client may have sent more (io/lingering_close.h). The upstream
// leg gets here only after the backend's end of stream: nothing is left unread on it.
void Session::closeLeg(int leg) {
  if (leg == kClient) {
    legs_[kClient].cancel();  // a read watching for the client's end of stream
    return LingeringClose::close(legs_[kClient]);
  }
  legs_[leg].close();
}

void Session::countFailure(std::string_view what) noexcept {
  record_.setOutcome(outcome::kFailed);
  try {
    worker_.stats.cell(Metric::kSessionFailures, {setup_.route->name}).add(1);
    spdlog::error("session on route {} for {} failed: {}", setup_.route->name,
                  setup_.client_address, what);
  } catch (...) {
    // Out of memory for a new cell: the failure is still handled, only not counted.
  }
}

void Session::failAtBoundary(int f, std::string_view what) {
  countFailure(what);
  queueClose(kClient, 1011, "internal error");
  queueClose(kUpstream, 1011, "internal error");
  if (flows_[f].mode == Mode::kRelay) flows_[f].mode = Mode::kDiscard;  // await its close
}

// The step that threw may have left a flow between frames or with bytes not yet written: a close
// frame goes only where the output is known to be at a frame boundary, written at once (the
// frame lives on the stack: a failure may be a want of memory), and the session ends without
// waiting for replies.
void Session::fail(std::string_view what) noexcept {
  countFailure(what);
  const bool consuming = std::exchange(in_consume_, false);
  if (finished_) return;
  for (int leg = 0; leg < 2; ++leg) {
    LegState& state = leg_state_[leg];
    const Flow& into = flows_[1 - leg];
    const bool cut = consuming && consuming_flow_ == 1 - leg;  // its output was not written
    if (state.lost || state.close_queued || into.remaining != 0 || into.pending_size != 0 || cut) {
      continue;
    }
    state.close_queued = true;
    const ControlFrame frame = makeCloseFrame(1011, "internal error", leg == kUpstream);
    const const_buffer bytes(frame.bytes.data(), frame.size);
    error_code ignored;
    legs_[leg].writeSome({&bytes, 1}, ignored);
    try {
      countClose("gateway", closeCodeLabel(1011));
    } catch (...) {
    }
  }
  try {
    finish("failed");
  } catch (...) {
    finished_ = true;
    for (auto& leg : legs_) leg.close();
  }
}

void Session::countClose(std::string_view side, std::string_view code_label) {
  worker_.stats.cell(Metric::kCloseCodes, {setup_.route->name, side, code_label}).add(1);
}

}  // namespace wsgate::gateway
