#include "io/relay_buffers.h"

#include <utility>

namespace wsgate::gateway {

RelayBuffers::RelayBuffers(WorkerStats& stats, size_t max_lent, size_t max_cached)
    : max_lent_(max_lent),
      max_cached_(max_cached),
      lent_bytes_(stats.cell(Metric::kRelayBufferBytes, {})) {
  cache_.reserve(max_cached_);
}

std::unique_ptr<uint8_t[]> RelayBuffers::lend(Holder& holder) {
  if (lent_ >= max_lent_) return nullptr;
  std::unique_ptr<uint8_t[]> buffer;
  if (!cache_.empty()) {
    buffer = std::move(cache_.back());
    cache_.pop_back();
  } else {
    // Not value-initialised: the pages are touched only as far as reads fill them.
    buffer.reset(new uint8_t[kBufferSize]);
  }
  ++lent_;
  lent_bytes_.add(static_cast<int64_t>(kBufferSize));
  if (!holder.is_linked()) holders_.push_back(holder);
  return buffer;
}

void RelayBuffers::giveBack(std::unique_ptr<uint8_t[]> buffer) {
  if (!buffer) return;
  --lent_;
  lent_bytes_.add(-static_cast<int64_t>(kBufferSize));
  if (cache_.size() < max_cached_) cache_.push_back(std::move(buffer));
}

void RelayBuffers::sweep() {
  for (auto it = holders_.begin(); it != holders_.end();) {
    Holder& holder = *it++;  // advance first: the holder may unlink itself
    if (!holder.returnIdleBuffers()) holder.unlink();
  }
}

}  // namespace wsgate::gateway
