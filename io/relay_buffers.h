// Read buffers lent to busy flows. An idle flow waits with only its small landing slot; a flow
// whose wake-up overflowed the slot borrows one buffer and reads straight into it for as long
// as its wake-ups stay larger than the slot, so a busy flow costs one `recv` per wake-up
// instead of a slot read, a drain read and a read that finds the socket empty.
//
// Bounded both ways: at most `max_lent` buffers are out at once (a flow that cannot borrow
// drains into the worker's shared buffer instead, slower but correct) and at most `max_cached`
// free ones are kept for reuse. Every sweep (the worker runs one a second) asks each holder to
// give back what it did not use since the previous sweep, so a session that goes quiet after a
// burst soon holds no buffer again. Worker thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "stats/stats.h"

namespace wsgate::gateway {

class RelayBuffers {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;

  // Something that borrows buffers. Unlinks itself from the sweep list when destroyed.
  class Holder : public boost::intrusive::list_base_hook<
                     boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
   public:
    // Gives back the buffers not used since the last call (now or once a pending read ends);
    // returns false when it holds none any more.
    virtual bool returnIdleBuffers() = 0;

   protected:
    ~Holder() = default;
  };

  RelayBuffers(WorkerStats& stats, size_t max_lent, size_t max_cached);
  RelayBuffers(const RelayBuffers&) = delete;
  RelayBuffers& operator=(const RelayBuffers&) = delete;

  // A kBufferSize buffer for `holder`, or null when `max_lent` buffers are out.
  std::unique_ptr<uint8_t[]> lend(Holder& holder);
  void giveBack(std::unique_ptr<uint8_t[]> buffer);
  void sweep();

  size_t lent() const { return lent_; }
  size_t cached() const { return cache_.size(); }

 private:
  using HolderList =
      boost::intrusive::list<Holder, boost::intrusive::constant_time_size<false>>;

  size_t max_lent_;
  size_t max_cached_;
  size_t lent_ = 0;
  std::vector<std::unique_ptr<uint8_t[]>> cache_;
  HolderList holders_;
  Cell& lent_bytes_;
};

}  // namespace wsgate::gateway
