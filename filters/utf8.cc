#include "filters/utf8.h"

#include <string>

#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

constexpr uint8_t kContinuation = 0x0;
constexpr uint8_t kText = 0x1;
constexpr uint8_t kBinary = 0x2;
constexpr uint8_t kClose = 0x8;

FrameVerdict invalid(std::string_view what) { return FrameVerdict::close(1007, what, "invalid_utf8"); }

std::shared_ptr<const FilterFactory> buildUtf8(const YAML::Node& node, const std::string& path,
                                               config::Diagnostics& diags) {
  if (node.IsNull()) return std::make_shared<Utf8Filter>(std::array<bool, 2>{true, true});
  if (!node.IsMap()) {
    diags.error(node, path, "must be a map ({} or { direction: client_to_upstream })");
    return nullptr;
  }
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"direction"}, diags)) return nullptr;
  std::array<bool, 2> directions{true, true};
  if (YAML::Node direction = node["direction"]) {
    const std::string text = direction.IsScalar() ? direction.Scalar() : "";
    if (text == "client_to_upstream") {
      directions = {true, false};
    } else if (text == "upstream_to_client") {
      directions = {false, true};
    } else if (text != "both") {
      diags.error(direction, path + ".direction",
                  "must be both, client_to_upstream or upstream_to_client, not \"" + text + "\"");
    }
  }
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<Utf8Filter>(directions);
}

WSGATE_REGISTER_FILTER("utf8", buildUtf8);

}  // namespace

std::unique_ptr<MessageFilter> Utf8Filter::newMessageFilter(const SessionContext&) const {
  return std::make_unique<Utf8Session>(directions_);
}

FrameVerdict Utf8Session::onFrame(const FrameEvent& frame) {
  const auto d = static_cast<size_t>(frame.direction);
  if (!directions_[d]) return {};
  Flow& flow = flows_[d];
  switch (frame.opcode) {
    case kText:
      flow.text.reset();
      flow.in_text = true;
      return FrameVerdict::inspect();
    case kContinuation:
      return flow.in_text ? FrameVerdict::inspect() : FrameVerdict{};
    case kBinary:
      flow.in_text = false;
      return {};
    case kClose:
      if (frame.payload_length <= 2) return {};
      flow.close.reset();
      flow.code_bytes = 0;
      return FrameVerdict::inspect();
    default:
      return {};
  }
}

FrameVerdict Utf8Session::onPayload(const FrameEvent& frame, std::span<const uint8_t> piece,
                                    bool frame_end) {
  Flow& flow = flows_[static_cast<size_t>(frame.direction)];
  if (frame.opcode == kClose) {
    const size_t code = std::min<size_t>(piece.size(), 2 - flow.code_bytes);
    flow.code_bytes = static_cast<uint8_t>(flow.code_bytes + code);
    if (!flow.close.feed(piece.subspan(code)) || (frame_end && !flow.close.complete())) {
      return invalid("invalid UTF-8 in a close reason");
    }
    return {};
  }
  if (!flow.text.feed(piece)) return invalid("invalid UTF-8 in a text message");
  if (frame_end && frame.fin) {
    flow.in_text = false;
    if (!flow.text.complete()) return invalid("text message ends inside a UTF-8 sequence");
  }
  return {};
}

}  // namespace wsgate::filters
