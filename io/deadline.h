// Bounds one phase of a handshake (read the request, connect, exchange with the backend): if the
// phase is still armed when the time is up, `on_expiry` runs (it cancels that phase's I/O, whose
// operation then ends with operation_aborted) and expired() turns true. A timer completion that
// arrives after disarm() or after the owner is gone finds nothing to do. Worker-thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace wsgate::gateway {

class Deadline {
 public:
  explicit Deadline(boost::asio::io_context& io)
      : timer_(io), state_(std::make_shared<State>()) {}
  ~Deadline() { disarm(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(std::chrono::milliseconds limit, std::function<void()> on_expiry) {
    state_->on_expiry = std::move(on_expiry);
    state_->expired = false;
    const unsigned generation = ++state_->generation;
    timer_.expires_after(limit);
    timer_.async_wait([state = state_, generation](const boost::system::error_code& ec) {
      if (ec || state->generation != generation || !state->on_expiry) return;
      state->expired = true;
      auto expire = std::move(state->on_expiry);
      state->on_expiry = nullptr;
      expire();
    });
  }
  void disarm() {
    state_->on_expiry = nullptr;
    ++state_->generation;
    timer_.cancel();
  }
  bool expired() const { return state_->expired; }

 private:
  struct State {
    std::function<void()> on_expiry;
    unsigned generation = 0;
    bool expired = false;
  };
  boost::asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

}  // namespace wsgate::gateway
