#include "io/deadlines.h"

#include <algorithm>

namespace wsgate::gateway {

size_t Deadlines::listFor(Clock::duration duration) {
  size_t empty = lists_.size();
  for (size_t i = 0; i < lists_.size(); ++i) {
    if (lists_[i].duration == duration) return i;
    if (!lists_[i].head && empty == lists_.size()) empty = i;
  }
  if (empty < lists_.size()) {
    lists_[empty].duration = duration;
    return empty;
  }
  lists_.push_back(List{duration});
  return lists_.size() - 1;
}

void Deadlines::arm(Entry& entry, Clock::duration after) {
  if (entry.owner_) disarm(entry);
  const size_t index = listFor(after);
  List& list = lists_[index];
  // A clock read earlier in the same wake-up could put this one before the tail: never.
  Clock::time_point due = Clock::now() + after;
  if (list.tail) due = std::max(due, list.tail->due_);
  entry.owner_ = this;
  entry.list_ = index;
  entry.due_ = due;
  entry.prev_ = list.tail;
  entry.next_ = nullptr;
  (list.tail ? list.tail->next_ : list.head) = &entry;
  list.tail = &entry;
  ++armed_;
  if (due < waiting_for_) waitFor(due);
}

void Deadlines::disarm(Entry& entry) {
  if (entry.owner_ != this) return;
  List& list = lists_[entry.list_];
  (entry.prev_ ? entry.prev_->next_ : list.head) = entry.next_;
  (entry.next_ ? entry.next_->prev_ : list.tail) = entry.prev_;
  entry.owner_ = nullptr;
  entry.prev_ = entry.next_ = nullptr;
  --armed_;
  // The pending wait stays: when it fires it finds nothing due and waits for the next head.
}

void Deadlines::close() {
  closed_ = true;
  timer_.reset();
  waiting_for_ = Clock::time_point::max();
}

void Deadlines::waitFor(Clock::time_point due) {
  if (closed_) return;
  if (!timer_) timer_.emplace(io_);
  waiting_for_ = due;
  timer_->expires_at(due);  // a pending wait ends with operation_aborted
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) onTimer();
  });
}

void Deadlines::onTimer() {
  waiting_for_ = Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  // An action may arm entries, in any list, or add a list: indexes, never references.
  for (size_t i = 0; i < lists_.size(); ++i) {
    while (lists_[i].head && lists_[i].head->due_ <= now) {
      Entry& entry = *lists_[i].head;
      const Entry::Fire fire = entry.fire_;
      void* const context = entry.context_;
      disarm(entry);
      fire(context);  // may destroy the entry
    }
  }
  Clock::time_point next = Clock::time_point::max();
  for (const List& list : lists_) {
    if (list.head) next = std::min(next, list.head->due_);
  }
  if (next < waiting_for_) waitFor(next);
}

}  // namespace wsgate::gateway
