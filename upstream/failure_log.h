// Folds a recurring warning: at most one line per interval, and the next line that is let
// through carries how many were folded since the previous one. An outage of a cluster then
// costs a bounded number of log lines however many clients it fails. One per kind of failure
// per cluster per worker; worker-thread only, no locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace wsgate::gateway {

class FailureLog {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kInterval = std::chrono::seconds(1);

  // What a line let through should add to its text: "" or " (N more in the last 1.2s)".
  struct Admitted {
    uint64_t folded = 0;
    Clock::duration since_last{};
    std::string suffix() const;
  };

  // A failure happened at `now`: either it should be logged (the folded count is handed over
  // and reset) or it is folded into the count.
  std::optional<Admitted> admit(Clock::time_point now);
  std::optional<Admitted> admit() { return admit(Clock::now()); }

 private:
  std::optional<Clock::time_point> last_logged_;
  uint64_t folded_ = 0;
};

}  // namespace wsgate::gateway
