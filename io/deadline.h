// Bounds one phase of a handshake (read the request, connect, exchange with the backend): if the
// phase is still armed when the time is up, `on_expiry` runs (it cancels that phase's I/O, whose
// operation then ends with operation_aborted) and expired() turns true. Kept in the worker's
// Deadlines: arming and disarming cost no timer operation. Worker-thread only.
#pragma once

#include <chrono>
#include <functional>
#include <utility>

#include "io/deadlines.h"

namespace wsgate::gateway {

class Deadline {
 public:
  explicit Deadline(Deadlines& deadlines) : deadlines_(deadlines), entry_(&Deadline::fire, this) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(std::chrono::milliseconds limit, std::function<void()> on_expiry) {
    on_expiry_ = std::move(on_expiry);
    expired_ = false;
    deadlines_.arm(entry_, limit);
  }
  // The next phase under the same deadline: what expiry does changes, not when.
  void retarget(std::function<void()> on_expiry) { on_expiry_ = std::move(on_expiry); }
  void disarm() {
    deadlines_.disarm(entry_);
    on_expiry_ = nullptr;
  }
  bool armed() const { return entry_.armed(); }
  bool expired() const { return expired_; }

 private:
  static void fire(void* context) {
    auto& self = *static_cast<Deadline*>(context);
    self.expired_ = true;
    auto expire = std::exchange(self.on_expiry_, nullptr);
    if (expire) expire();
  }

  Deadlines& deadlines_;
  Deadlines::Entry entry_;
  std::function<void()> on_expiry_;
  bool expired_ = false;
};

}  // namespace wsgate::gateway
