// The session's deadlines and what its message filters ask of it: throttles and the reads
// they hold back, payload inspection, the gateway's pings and the pongs that answer them,
// going away, abandoning a dead leg, and wake-ups; all on one timer.
#include "proxy/session.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

namespace wsgate::gateway {

namespace {

using boost::system::error_code;

}  // namespace

void Session::consumeBacklog(int f) {
  Flow& flow = flows_[f];
  // A throttle met again keeps the rest in the same buffer: one allocation per throttled
  // stretch, given back once the stretch is over.
  const size_t size = std::exchange(flow.fx->backlog_size, 0);
  consume(f, flow.fx->backlog.get(), size);
  if (flow.fx->backlog_size == 0) {
    flow.fx->backlog.reset();
    flow.fx->backlog_capacity = 0;
  }
  if (flow.mode == Mode::kDone) returnLent(flow);
  resumeRead(f);
}

// A throttled source is not read until its time: its kernel buffer fills and TCP slows the
// sender, and nothing is buffered here. The time counts as throttled from the first read held.
bool Session::throttled(int f) {
  Flow& flow = flows_[f];
  const auto now = Clock::now();
  if (now >= flow.fx->resume_at) {
    endThrottle(f, now);
    return false;
  }
  if (flow.fx->throttled_since == Clock::time_point{}) flow.fx->throttled_since = now;
  armTimer();
  return true;
}

void Session::endThrottle(int f, Clock::time_point now) {
  Flow& flow = flows_[f];
  flow.fx->resume_at = {};
  if (flow.fx->throttled_since == Clock::time_point{}) return;
  if (!flow.fx->throttled_us) {
    flow.fx->throttled_us = &worker_.stats.cell(
        Metric::kThrottledSeconds, {setup_.route->name, filters::directionName(Session::directionOf(f))});
  }
  flow.fx->throttled_us->add(std::chrono::duration_cast<std::chrono::microseconds>(
                                 now - flow.fx->throttled_since)
                                 .count());
  flow.fx->throttled_since = {};
}

void Session::filterCloses(int f, size_t index, const filters::FrameVerdict& verdict) {
  worker_.stats
      .cell(Metric::kFilterRejections, {setup_.route->name, filters_[index].name, verdict.label()})
      .add(1);
  spdlog::debug("filter {} closed {} on route {}: {} {}", filters_[index].name, legName(f),
                setup_.route->name, verdict.code(), verdict.reason());
  rejectSource(f, verdict.code(), verdict.reason());
}

// Unmasked into a small buffer on the stack: the bytes forwarded stay as the peer sent them.
bool Session::inspectPayload(int f, const uint8_t* data, size_t size, bool frame_end) {
  Flow& flow = flows_[f];
  std::array<uint8_t, 1024> plain;
  size_t done = 0;
  do {
    const size_t n = std::min(plain.size(), size - done);
    if (n > 0) std::memcpy(plain.data(), data + done, n);
    if (flow.fx->inspect_masked) {
      applyMask(plain.data(), n, flow.fx->inspect_mask, flow.fx->inspect_offset);
    }
    flow.fx->inspect_offset += n;
    done += n;
    const bool last = frame_end && done == size;
    for (size_t i = 0; i < filters_.size() && i < 64; ++i) {
      if ((flow.fx->inspecting >> i & 1) == 0) continue;
      current_filter_ = i;
      const auto verdict = askFilter(f, [&] {
        return filters_[i].filter->onPayload(flow.fx->inspected, {plain.data(), n}, last);
      });
      if (!verdict) return false;
      if (verdict->closes()) {
        filterCloses(f, i, *verdict);
        return false;
      }
    }
  } while (done < size);
  if (frame_end) flow.fx->inspecting = 0;
  return true;
}

bool Session::heldPongIsOurs(int f) const {
  const Flow& flow = flows_[f];
  if (flow.fx->pong_size < kPingPayloadSize + 2) return false;
  const size_t header_size = flow.fx->pong_size - kPingPayloadSize;
  std::array<uint8_t, kPingPayloadSize> payload;
  std::memcpy(payload.data(), flow.fx->pong.data() + header_size, kPingPayloadSize);
  if (flow.fx->pong[1] & 0x80) {
    const auto& pong = flow.fx->pong;
    const std::array<uint8_t, 4> key = {pong[2], pong[3], pong[4], pong[5]};
    applyMask(payload.data(), payload.size(), key, 0);
  }
  return payload == leg_state_[f].lx->ping_payload;
}

void Session::startCloseTimer() {
  if (closing_) return;
  closing_ = true;
  worker_.deadlines.arm(close_deadline_, setup_.route->close_timeout);
}

void Session::closeTimedOut(void* session) {
  auto self = static_cast<Session*>(session)->shared_from_this();
  self->guarded([&] { self->finish("closing handshake timed out"); });
}

Session::Clock::time_point Session::nextDeadline() const {
  Clock::time_point next = kNever;
  const auto idle = setup_.route->idle_timeout;
  if (!closing_ && idle.count() > 0) next = std::min(next, last_activity_ + idle);
  for (const Flow& flow : flows_) {
    if (flow.fx && flow.fx->resume_at != Clock::time_point{}) {
      next = std::min(next, flow.fx->resume_at);
    }
  }
  for (const FilterSlot& slot : filters_) next = std::min(next, slot.wake);
  return next;
}

// Re-armed only when a deadline comes earlier than the pending wait: later ones (the idle
// deadline moved by traffic) are found when that wait fires.
void Session::armTimer() {
  if (step_depth_ > 0) {
    timer_wanted_ = true;
    return;
  }
  armTimerNow();
}

void Session::armTimerNow() {
  timer_wanted_ = false;
  if (finished_) return;
  const Clock::time_point next = nextDeadline();
  if (next >= armed_for_) return;
  armed_for_ = next;
  if (!timer_) timer_.emplace(worker_.io);
  timer_->expires_at(next);  // a pending wait ends with operation_aborted
  timer_->async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->guarded([&] { self->onTimer(ec); });
  });
}

void Session::onTimer(const error_code& /*ec*/) {
  if (finished_) return;
  armed_for_ = kNever;
  const auto now = Clock::now();
  const auto idle = setup_.route->idle_timeout;
  if (!closing_ && idle.count() > 0 && now - last_activity_ >= idle) {
    // A source held by a throttle is not idle: its bytes wait on the gateway, and closing
    // would drop them. The idle time starts again once it is read.
    const auto heldBy = [](const Flow& flow) {
      return flow.fx && flow.fx->resume_at != Clock::time_point{};
    };
    const bool held = heldBy(flows_[kClient]) || heldBy(flows_[kUpstream]);
    if (held) {
      last_activity_ = now;
    } else {
      queueClose(kClient, 1001, "idle timeout");
      queueClose(kUpstream, 1001, "idle timeout");
    }
  }
  for (int f = 0; f < 2; ++f) {
    const FlowFilters* fx = flows_[f].fx;
    if (!fx || fx->resume_at == Clock::time_point{} || now < fx->resume_at) continue;
    endThrottle(f, now);
    resumeRead(f);
  }
  for (size_t i = 0; i < filters_.size() && !finished_; ++i) {
    if (filters_[i].wake > now) continue;
    filters_[i].wake = kNever;
    current_filter_ = i;
    try {
      filters_[i].filter->onTimer(now);
    } catch (const std::exception& e) {
      countFailure(e.what());
      goAway(1011, "internal error");
    } catch (...) {
      countFailure("unknown exception from a filter");
      goAway(1011, "internal error");
    }
  }
  armTimer();
}

bool Session::ping(filters::Side side) {
  const int leg = static_cast<int>(side);
  LegState& state = leg_state_[leg];
  Flow& into = flows_[1 - leg];
  if (!state.lx || finished_ || closing_ || state.lost || state.close_queued ||
      state.close_received || state.lx->ping_unanswered || into.mode != Mode::kRelay) {
    return false;
  }
  for (size_t i = 0; i < kPingPayloadSize; i += 4) {
    const auto random = randomMaskKey();
    std::memcpy(state.lx->ping_payload.data() + i, random.data(), 4);
  }
  state.lx->ping_unanswered = true;
  const ControlFrame frame = makePingFrame(state.lx->ping_payload, leg == kUpstream);
  std::memcpy(into.fx->ping.data(), frame.bytes.data(), frame.size);
  into.fx->ping_size = static_cast<uint8_t>(frame.size);
  if (!state.lx->pings) {
    state.lx->pings =
        &worker_.stats.cell(Metric::kKeepalivePings, {setup_.route->name, legName(leg)});
  }
  state.lx->pings->add(1);
  if (in_consume_ && consuming_flow_ == 1 - leg) return true;  // consume() sends it
  if (into.pending_size == 0 && injectReady(into)) sendInject(1 - leg);
  return true;
}

void Session::goAway(uint16_t code, std::string_view reason) {
  guarded([&] {
    queueClose(kClient, code, reason);
    queueClose(kUpstream, code, reason);
  });
}

void Session::abandon(filters::Side side, std::string_view reason) {
  const int leg = static_cast<int>(side);
  if (finished_ || leg_state_[leg].lost) return;
  worker_.stats.cell(Metric::kKeepaliveTimeouts, {setup_.route->name, legName(leg)}).add(1);
  spdlog::debug("route {}: {} is unresponsive: {}", setup_.route->name, legName(leg), reason);
  queueClose(1 - leg, 1001, reason);
  LegState& state = leg_state_[leg];
  state.lost = true;
  state.close_received = true;  // nothing more is awaited from it
  Flow& from = flows_[leg];
  Flow& into = flows_[1 - leg];
  into.pending.reset();
  into.pending_size = into.pending_offset = 0;
  into.inject.reset();
  if (into.fx) into.fx->ping_size = 0;
  from.mode = Mode::kDone;
  if (into.mode == Mode::kRelay) into.mode = Mode::kDiscard;
  legs_[leg].cancel();
  legs_[leg].close();
  maybeFinish();
  resumeRead(1 - leg);
}

void Session::wakeAt(Clock::time_point when) {
  if (current_filter_ >= filters_.size()) return;
  filters_[current_filter_].wake = when;
  armTimer();
}

}  // namespace wsgate::gateway
