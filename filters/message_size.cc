#include "filters/message_size.h"

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

class MessageSizeSession final : public MessageFilter {
 public:
  explicit MessageSizeSession(const MessageSizeFilter& config) : config_(config) {}
  FrameVerdict onFrame(const FrameEvent& frame) override { return config_.check(frame); }

 private:
  const MessageSizeFilter& config_;
};

std::shared_ptr<const FilterFactory> buildMessageSize(const YAML::Node& node,
                                                      const std::string& path,
                                                      config::Diagnostics& diags) {
  if (!config::checkKeys(node, path, {"max_frame_bytes", "max_message_bytes", "direction"},
                         diags)) {
    return nullptr;
  }
  MessageSizeFilter::Limits limits;
  bool ok = true;
  auto readLimit = [&](const char* key, uint64_t& out) {
    YAML::Node value = node[key];
    if (!value) return;
    auto size = config::readSize(value, path + "." + key, diags);
    if (!size) {
      ok = false;
    } else if (*size == 0) {
      diags.error(value, path + "." + key, "must be greater than 0");
      ok = false;
    } else {
      out = *size;
    }
  };
  readLimit("max_frame_bytes", limits.max_frame_bytes);
  readLimit("max_message_bytes", limits.max_message_bytes);
  if (!node["max_frame_bytes"] && !node["max_message_bytes"]) {
    diags.error(node, path, "set max_frame_bytes, max_message_bytes or both");
    ok = false;
  }
  if (YAML::Node direction = node["direction"]) {
    const std::string text = direction.IsScalar() ? direction.Scalar() : "";
    if (text == "client_to_upstream") {
      limits.upstream_to_client = false;
    } else if (text == "upstream_to_client") {
      limits.client_to_upstream = false;
    } else if (text != "both") {
      diags.error(direction, path + ".direction",
                  "must be both, client_to_upstream or upstream_to_client, not \"" + text + "\"");
      ok = false;
    }
  }
  if (!ok) return nullptr;
  return std::make_shared<MessageSizeFilter>(limits);
}

WSGATE_REGISTER_FILTER("message_size", buildMessageSize);

}  // namespace

std::unique_ptr<MessageFilter> MessageSizeFilter::newMessageFilter() const {
  return std::make_unique<MessageSizeSession>(*this);
}

FrameVerdict MessageSizeFilter::check(const FrameEvent& frame) const {
  if (frame.isControl()) return std::nullopt;
  const bool applies = frame.direction == Direction::kClientToUpstream ? limits_.client_to_upstream
                                                                       : limits_.upstream_to_client;
  if (!applies) return std::nullopt;
  if (limits_.max_frame_bytes && frame.payload_length > limits_.max_frame_bytes) {
    return CloseVerdict{1009, "frame too big"};
  }
  if (limits_.max_message_bytes && frame.message_length > limits_.max_message_bytes) {
    return CloseVerdict{1009, "message too big"};
  }
  return std::nullopt;
}

}  // namespace wsgate::filters
