// A token bucket: tokens come at `rate` per second up to `burst`, and a request takes some. For
// the rate limits of filters (messages or bytes per second, per session and direction;
// handshakes per second per client address). Starts full. A request larger than the burst
// passes when the bucket is full and leaves it in debt, so a message over the burst is never
// refused for good: its sender then waits for the debt to be paid. Pure; the caller supplies
// the time, which keeps it testable and lets a session read the clock once per wake-up.
#pragma once

#include <chrono>

namespace wsgate::gateway {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate, double burst, Clock::time_point now);

  // Takes `n` tokens when there are enough at `now` (min(n, burst)); true when taken.
  bool take(double n, Clock::time_point now);
  // Takes `n` tokens whatever there are, leaving the bucket in debt if need be: for what has
  // already passed (a throttled frame is forwarded, then its sender waits).
  void charge(double n, Clock::time_point now);
  // The earliest time at which take(n) succeeds: `now` when it would now. For a throttle's
  // pause and for Retry-After.
  Clock::time_point availableAt(double n, Clock::time_point now);
  double tokens(Clock::time_point now);

 private:
  void refill(Clock::time_point now);

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace wsgate::gateway
