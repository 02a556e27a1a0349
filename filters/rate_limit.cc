#include "filters/rate_limit.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

// A burst under one unit could never pass a single message (or byte); one second's worth is
// the default, and never less than one.
double defaultBurst(double rate) { return std::max(1.0, rate); }

void readDirection(const YAML::Node& node, const std::string& path,
                   RateLimitFilter::DirectionLimits& out, config::Diagnostics& diags) {
  if (!config::checkKeys(node, path,
                         {"messages", "bytes", "burst_messages", "burst_bytes", "action"}, diags)) {
    return;
  }
  out.enabled = true;
  auto readLimit = [&](const char* rate_key, const char* burst_key, RateLimitFilter::Limit& limit,
                       bool whole) {
    const YAML::Node rate = node[rate_key];
    const YAML::Node burst = node[burst_key];
    if (rate) {
      if (auto value = config::readRate(rate, path + "." + rate_key, diags)) {
        limit.rate = *value;
        limit.burst = defaultBurst(*value);
      }
    } else if (burst) {
      diags.error(burst, path + "." + burst_key,
                  std::string("needs a rate: set ") + rate_key + " too");
    }
    if (!rate || !burst) return;
    const std::string burst_path = path + "." + burst_key;
    if (whole) {
      // A count of messages: an integer, so that "1.5 messages" is not silently truncated.
      if (auto value = config::readInt(burst, burst_path, 1, 1'000'000'000, diags)) {
        limit.burst = static_cast<double>(*value);
      }
    } else if (auto value = config::readSize(burst, burst_path, diags)) {
      if (*value == 0) {
        diags.error(burst, burst_path, "must be at least 1 byte");
      } else {
        limit.burst = static_cast<double>(*value);
      }
    }
  };
  readLimit("messages", "burst_messages", out.messages, true);
  readLimit("bytes", "burst_bytes", out.bytes, false);
  if (!node["messages"] && !node["bytes"]) {
    diags.error(node, path, "set messages, bytes or both");
  }
  if (const YAML::Node action = node["action"]) {
    const std::string text = action.IsScalar() ? action.Scalar() : "";
    if (text == "close") {
      out.action = RateLimitFilter::Action::kClose;
    } else if (text != "throttle") {
      diags.error(action, path + ".action", "must be throttle or close, not \"" + text + "\"");
    }
  }
}

std::shared_ptr<const FilterFactory> buildRateLimit(const YAML::Node& node, const std::string& path,
                                                    config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"client_to_upstream", "upstream_to_client"}, diags)) {
    return nullptr;
  }
  RateLimitFilter::Limits limits;
  for (Direction d : {Direction::kClientToUpstream, Direction::kUpstreamToClient}) {
    const std::string key(directionName(d));
    if (const YAML::Node sub = node[key]) {
      readDirection(sub, path + "." + key, limits[static_cast<size_t>(d)], diags);
    }
  }
  if (!node["client_to_upstream"] && !node["upstream_to_client"]) {
    diags.error(node, path, "set client_to_upstream, upstream_to_client or both");
  }
  // Every problem is reported (unknown keys included) before giving up on this filter.
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<RateLimitFilter>(limits);
}

WSGATE_REGISTER_FILTER("rate_limit", buildRateLimit);

}  // namespace

std::unique_ptr<MessageFilter> RateLimitFilter::newMessageFilter(
    const SessionContext& context) const {
  return std::make_unique<RateLimitSession>(*this, context.started);
}

RateLimitSession::RateLimitSession(const RateLimitFilter& config, Clock::time_point started)
    : config_(config) {
  for (Direction d : {Direction::kClientToUpstream, Direction::kUpstreamToClient}) {
    const auto& limits = config.limits(d);
    Buckets& buckets = buckets_[static_cast<size_t>(d)];
    if (!limits.enabled) continue;
    if (limits.messages.rate > 0) {
      buckets.messages.emplace(limits.messages.rate, limits.messages.burst, started);
    }
    if (limits.bytes.rate > 0)
      buckets.bytes.emplace(limits.bytes.rate, limits.bytes.burst, started);
  }
}

FrameVerdict RateLimitSession::onFrame(const FrameEvent& frame) {
  // The clock is read only for frames a limit applies to.
  if (frame.isControl() || !config_.limits(frame.direction).enabled) return {};
  return onFrameAt(frame, Clock::now());
}

FrameVerdict RateLimitSession::onFrameAt(const FrameEvent& frame, Clock::time_point now) {
  // Control frames are the peers' liveness and closing: never held back nor counted.
  if (frame.isControl()) return {};
  const auto& limits = config_.limits(frame.direction);
  if (!limits.enabled) return {};
  Buckets& buckets = buckets_[static_cast<size_t>(frame.direction)];
  // Counted at the first frame, so that `close` refuses a message before any of it is sent.
  const bool starts_message = frame.opcode != 0;
  auto* messages = starts_message && buckets.messages ? &*buckets.messages : nullptr;
  auto* bytes = buckets.bytes && frame.payload_length > 0 ? &*buckets.bytes : nullptr;
  const auto size = static_cast<double>(frame.payload_length);

  if (limits.action == RateLimitFilter::Action::kClose) {
    if (messages && !messages->take(1, now)) {
      return FrameVerdict::close(1008, "message rate exceeded", "message_rate");
    }
    if (bytes && !bytes->take(size, now)) {
      return FrameVerdict::close(1008, "byte rate exceeded", "byte_rate");
    }
    return {};
  }
  // Throttle: the frame is paid for whatever the buckets hold (it goes on), and the source
  // waits until each bucket holds a unit again, i.e. its debt is paid.
  Clock::time_point until = now;
  if (messages) {
    messages->charge(1, now);
    until = std::max(until, messages->availableAt(1, now));
  }
  if (bytes) {
    bytes->charge(size, now);
    until = std::max(until, bytes->availableAt(1, now));
  }
  if (until <= now) return {};
  return FrameVerdict::throttle(until);
}

}  // namespace wsgate::filters
