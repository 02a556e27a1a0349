#include "filters/message_size.h"

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

// Stateless today (the gateway sums message_length); the per-session object is where per-session
// state would go. A reference is enough: the session holds the config snapshot that owns the
// factory.
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
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"max_frame_bytes", "max_message_bytes", "direction"},
                         diags)) {
    return nullptr;
  }
  MessageSizeFilter::Limits limits;
  auto readLimit = [&](const char* key, uint64_t& out) {
    YAML::Node value = node[key];
    if (!value) return;
    auto size = config::readSize(value, path + "." + key, diags);
    if (!size) return;
    if (*size == 0) {
      // 0 would read as "no limit" to the check below; say what to do instead.
      diags.error(value, path + "." + key, "must be greater than 0 (omit the key for no limit)");
    } else {
      out = *size;
    }
  };
  readLimit("max_frame_bytes", limits.max_frame_bytes);
  readLimit("max_message_bytes", limits.max_message_bytes);
  if (!node["max_frame_bytes"] && !node["max_message_bytes"]) {
    diags.error(node, path, "set max_frame_bytes, max_message_bytes or both");
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
    }
  }
  // Every problem is reported (unknown keys included) before giving up on this filter.
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<MessageSizeFilter>(limits);
}

WSGATE_REGISTER_FILTER("message_size", buildMessageSize);

}  // namespace

std::unique_ptr<MessageFilter> MessageSizeFilter::newMessageFilter(const SessionContext&) const {
  return std::make_unique<MessageSizeSession>(*this);
}

FrameVerdict MessageSizeFilter::check(const FrameEvent& frame) const {
  // Only data frames (continuation, text, binary); control frames are bounded to 125 bytes by
  // the codec and reserved opcodes are the codec's protocol error, not a size question.
  if (frame.opcode > 2) return {};
  const bool applies = frame.direction == Direction::kClientToUpstream ? limits_.client_to_upstream
                                                                       : limits_.upstream_to_client;
  if (!applies) return {};
  if (limits_.max_frame_bytes && frame.payload_length > limits_.max_frame_bytes) {
    return FrameVerdict::close(1009, "frame too big", "frame_too_big");
  }
  if (limits_.max_message_bytes && frame.message_length > limits_.max_message_bytes) {
    return FrameVerdict::close(1009, "message too big", "message_too_big");
  }
  return {};
}

}  // namespace wsgate::filters
