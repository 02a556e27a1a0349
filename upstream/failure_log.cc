#include "upstream/failure_log.h"

#include <spdlog/fmt/fmt.h>

namespace wsgate::gateway {

std::string FailureLog::Admitted::suffix() const {
  if (folded == 0) return {};
  const double seconds = std::chrono::duration<double>(since_last).count();
  return fmt::format(" ({} more in the last {:.1f}s)", folded, seconds);
}

std::optional<FailureLog::Admitted> FailureLog::admit(Clock::time_point now) {
  if (last_logged_ && now - *last_logged_ < kInterval) {
    ++folded_;
    return std::nullopt;
  }
  Admitted admitted;
  admitted.folded = folded_;
  if (last_logged_) admitted.since_last = now - *last_logged_;
  last_logged_ = now;
  folded_ = 0;
  return admitted;
}

}  // namespace wsgate::gateway
