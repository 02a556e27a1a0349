// One worker's deadlines of fixed durations: a route's close_timeout, a cluster's
// response_timeout, a listener's request_timeout. Nearly all of them are disarmed long before
// they fall due, and a timer per deadline would make each arm and disarm a timer-queue insert,
// an allocation and, on cancel, a handler posted through the loop. Here the deadlines of one
// duration wait in a list in the order they fall due (each is appended at the tail), so arming
// is an append, disarming an unlink, and one Asio timer waits for the earliest head.
// Worker-thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace wsgate::gateway {

class Deadlines {
 public:
  using Clock = std::chrono::steady_clock;

  // One deadline, kept in its owner. `fire(context)` runs when it falls due, once, already
  // disarmed; it may arm or disarm any entry, this one included, and may destroy its owner.
  class Entry {
   public:
    using Fire = void (*)(void* context);
    Entry(Fire fire, void* context) : fire_(fire), context_(context) {}
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    ~Entry() {
      if (owner_) owner_->disarm(*this);
    }
    bool armed() const { return owner_ != nullptr; }

   private:
    friend class Deadlines;
    Fire fire_;
    void* context_;
    Deadlines* owner_ = nullptr;
    size_t list_ = 0;
    Entry* prev_ = nullptr;
    Entry* next_ = nullptr;
    Clock::time_point due_{};
  };

  explicit Deadlines(boost::asio::io_context& io) : io_(io) {}
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;

  // Falls due `after` from now (never before the deadlines of the same duration armed earlier).
  // Re-arming an armed entry moves it.
  void arm(Entry& entry, Clock::duration after);
  void disarm(Entry& entry);
  // Before the io_context goes: the timer is released and nothing fires from now on. Entries
  // may still be disarmed (their owners die with the io_context's handlers).
  void close();
  size_t armedCount() const { return armed_; }

 private:
  struct List {
    Clock::duration duration{};
    Entry* head = nullptr;
    Entry* tail = nullptr;
  };
  size_t listFor(Clock::duration duration);
  void waitFor(Clock::time_point due);
  void onTimer();

  boost::asio::io_context& io_;
  // Few: one per distinct duration armed at once; an emptied list is reused for a new duration.
  std::vector<List> lists_;
  std::optional<boost::asio::steady_timer> timer_;  // made on the first arm
  Clock::time_point waiting_for_ = Clock::time_point::max();  // the pending wait's expiry
  size_t armed_ = 0;
  bool closed_ = false;
};

}  // namespace wsgate::gateway
