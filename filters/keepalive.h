// `keepalive`: the gateway pings each leg that has been silent for `interval`, and a leg that
// sends nothing back within `timeout` of that ping is dead: its connection is closed and the
// other side gets 1001 (SessionControl::abandon). Any frame from the leg counts as life, the
// answer to the gateway's ping included (the session consumes that pong: neither peer sees it).
// Pings and pongs between the peers pass as before. One wake-up per session at a time, read
// from the times the session already has: an idle session costs one timer and no allocation.
#pragma once

#include <array>
#include <chrono>
#include <memory>

#include "filters/filter.h"

namespace wsgate::filters {

class KeepaliveFilter final : public FilterFactory {
 public:
  struct Settings {
    std::chrono::milliseconds interval{20000};
    std::chrono::milliseconds timeout{10000};
    std::array<bool, 2> sides{true, true};  // [client, upstream]: which legs are pinged
  };

  explicit KeepaliveFilter(Settings settings) : settings_(settings) {}

  std::string_view name() const override { return "keepalive"; }
  std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext& context) const override;
  const Settings& settings() const { return settings_; }

 private:
  Settings settings_;
};

// The per-session state, public for tests.
class KeepaliveSession final : public MessageFilter {
 public:
  KeepaliveSession(const KeepaliveFilter::Settings& settings, SessionControl* control);

  void onStart(Clock::time_point now) override;
  FrameVerdict onFrame(const FrameEvent& frame) override;
  void onTimer(Clock::time_point now) override;

 private:
  struct Leg {
    Clock::time_point heard{};      // the last frame from it
    Clock::time_point answer_by{};  // a ping is out: the leg is dead if silent until then
    bool pinged = false;
  };
  void scheduleNext();

  const KeepaliveFilter::Settings& settings_;
  SessionControl* control_;
  std::array<Leg, 2> legs_;
};

}  // namespace wsgate::filters
