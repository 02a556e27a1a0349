// The sessions alive on one worker, so that a drain can reach them: an intrusive list (two
// pointers per session, no allocation), touched only from the worker's thread. A session is
// listed while nothing has asked it to go away yet; `alive` counts it until it ends, and is
// read from other threads (the server waits for it to reach 0).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wsgate::gateway {

class LiveSession {
 public:
  // Ends the session politely: `code` and `reason` to both legs at their frame boundaries.
  virtual void goAway(uint16_t code, std::string_view reason) = 0;
  // Its tags: the listener that accepted it and the route it runs on.
  virtual std::string_view listenerName() const = 0;
  virtual std::string_view routeName() const = 0;

 protected:
  ~LiveSession() = default;

 private:
  friend class LiveSessions;
  LiveSession* prev_ = nullptr;
  LiveSession* next_ = nullptr;
  bool listed_ = false;
  bool counted_ = false;
};

class LiveSessions {
 public:
  void add(LiveSession& session) {
    if (session.counted_) return;
    session.counted_ = true;
    session.listed_ = true;
    session.prev_ = nullptr;
    session.next_ = head_;
    if (head_) head_->prev_ = &session;
    head_ = &session;
    ++listed_;
    alive_.store(alive_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // The first listed session, taken off the list (it stays alive until gone()); null if none.
  LiveSession* take() {
    LiveSession* session = head_;
    if (session) unlink(*session);
    return session;
  }
  // The session ended (idempotent).
  void gone(LiveSession& session) {
    if (!session.counted_) return;
    session.counted_ = false;
    if (session.listed_) unlink(session);
    alive_.store(alive_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  size_t listed() const { return listed_; }
  // Calls `visit(session)` for each listed session (worker thread).
  template <typename Visit>
  void forEach(Visit&& visit) const {
    for (LiveSession* s = head_; s; s = s->next_) visit(*s);
  }
  size_t alive() const { return alive_.load(std::memory_order_relaxed); }

 private:
  void unlink(LiveSession& session) {
    if (session.prev_) session.prev_->next_ = session.next_;
    if (session.next_) session.next_->prev_ = session.prev_;
    if (head_ == &session) head_ = session.next_;
    session.prev_ = session.next_ = nullptr;
    session.listed_ = false;
    --listed_;
  }

  LiveSession* head_ = nullptr;
  size_t listed_ = 0;
  std::atomic<size_t> alive_{0};  // one writer (the worker), read by the server's thread
};

}  // namespace wsgate::gateway
