// `rate_limit`: per-session limits on data messages and data payload bytes per second, each
// direction on its own, with bursts (token buckets that start full). A message is counted at
// its first frame; bytes are the payload lengths of data frames, taken from each frame's
// header; control frames are never limited. Over a limit, by the direction's `action`:
//  - `throttle`: the frame passes and its source is not read again until the bucket has paid
//    its debt, so TCP backpressure slows the sender; nothing is dropped or buffered here;
//  - `close`: close 1008 to the sender (the gateway sends 1001 to the other side), before any
//    byte of that frame is forwarded.
#pragma once

#include <array>
#include <memory>
#include <optional>

#include "filters/filter.h"
#include "filters/token_bucket.h"

namespace wsgate::filters {

class RateLimitFilter final : public FilterFactory {
 public:
  enum class Action : uint8_t { kThrottle, kClose };
  struct Limit {
    double rate = 0;  // per second; 0: no limit
    double burst = 0;
  };
  struct DirectionLimits {
    bool enabled = false;
    Limit messages;
    Limit bytes;
    Action action = Action::kThrottle;
  };
  using Limits = std::array<DirectionLimits, 2>;  // indexed by Direction

  explicit RateLimitFilter(Limits limits) : limits_(limits) {}

  std::string_view name() const override { return "rate_limit"; }
  std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext& context) const override;

  const DirectionLimits& limits(Direction d) const { return limits_[static_cast<size_t>(d)]; }

 private:
  Limits limits_;
};

// The per-session buckets; onFrameAt takes the time so that tests need no clock.
class RateLimitSession final : public MessageFilter {
 public:
  RateLimitSession(const RateLimitFilter& config, Clock::time_point started);

  FrameVerdict onFrame(const FrameEvent& frame) override;
  FrameVerdict onFrameAt(const FrameEvent& frame, Clock::time_point now);

 private:
  struct Buckets {
    std::optional<gateway::TokenBucket> messages;
    std::optional<gateway::TokenBucket> bytes;
  };

  // A reference is enough: the session holds the config snapshot that owns the factory.
  const RateLimitFilter& config_;
  std::array<Buckets, 2> buckets_;
};

}  // namespace wsgate::filters
