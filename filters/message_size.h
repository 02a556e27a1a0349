// `message_size`: closes a session whose peer sends a data frame or a whole (possibly
// fragmented) message over the limit, decided from frame headers before the payload is
// forwarded: close 1009 to the sender (the gateway sends 1001 to the other side).
#pragma once

#include <cstdint>
#include <memory>

#include "filters/filter.h"

namespace wsgate::filters {

class MessageSizeFilter final : public FilterFactory {
 public:
  struct Limits {
    uint64_t max_frame_bytes = 0;    // 0: no frame limit
    uint64_t max_message_bytes = 0;  // 0: no message limit
    bool client_to_upstream = true;
    bool upstream_to_client = true;
  };

  explicit MessageSizeFilter(Limits limits) : limits_(limits) {}

  std::string_view name() const override { return "message_size"; }
  std::unique_ptr<MessageFilter> newMessageFilter(const SessionContext& context) const override;

  // The verdict for one frame; the per-session filter delegates here.
  FrameVerdict check(const FrameEvent& frame) const;

 private:
  Limits limits_;
};

}  // namespace wsgate::filters
