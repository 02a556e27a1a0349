#include "filters/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace wsgate::gateway {

namespace {

// Tokens are counted in floating point: a token due at exactly this instant (10 ms at 100/s)
// must not be missed by a rounding error.
constexpr double kSlack = 1e-9;

}  // namespace

TokenBucket::TokenBucket(double rate, double burst, Clock::time_point now)
    : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now <= last_) return;  // a clock read earlier in the same wake-up: nothing to add
  const double seconds = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + seconds * rate_);
  last_ = now;
}

bool TokenBucket::take(double n, Clock::time_point now) {
  refill(now);
  if (tokens_ + kSlack < std::min(n, burst_)) return false;
  tokens_ -= n;
  return true;
}

void TokenBucket::charge(double n, Clock::time_point now) {
  refill(now);
  tokens_ -= n;
}

TokenBucket::Clock::time_point TokenBucket::availableAt(double n, Clock::time_point now) {
  refill(now);
  const double missing = std::min(n, burst_) - tokens_;
  if (missing <= kSlack) return now;
  const auto wait = std::chrono::duration<double>(missing / rate_);
  // Rounded up, so that take() at that time succeeds.
  return now + std::chrono::ceil<Clock::duration>(wait);
}

double TokenBucket::tokens(Clock::time_point now) {
  refill(now);
  return tokens_;
}

}  // namespace wsgate::gateway
