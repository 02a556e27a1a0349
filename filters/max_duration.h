// `max_duration`: ends each session after `max`, give or take a random `jitter` (a share of
// `max`, drawn per session, uniform) so that sessions opened together (after a deploy, a
// reconnect storm) do not all end together. At its deadline the session is ended politely:
// 1001 to both sides, each at a frame boundary (SessionControl::goAway).
#pragma once

#include <chrono>
#include <memory>

#include "filters/filter.h"

namespace wsgate::filters {

class MaxDurationFilter final : public FilterFactory {
 public:
  // `jitter`: a fraction of `max`, 0 to 0.5.
  MaxDurationFilter(std::chrono::milliseconds max, double jitter) : max_(max), jitter_(jitter) {}

  std::string_view name() const override { return "max_duration"; }
  std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext& context) const override;

  // The end of a session started at `started`, for `unit` in [0, 1]: `unit` 0 is max - jitter,
  // 1 is max + jitter, evenly in between.
  Clock::time_point deadline(Clock::time_point started, double unit) const;
  std::chrono::milliseconds max() const { return max_; }
  double jitter() const { return jitter_; }

 private:
  std::chrono::milliseconds max_;
  double jitter_;
};

}  // namespace wsgate::filters
