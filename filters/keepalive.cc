#include "filters/keepalive.h"

#include <algorithm>
#include <string>

#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

constexpr std::array<std::string_view, 2> kDeadReason = {
    "client did not answer the keepalive ping", "upstream did not answer the keepalive ping"};

std::shared_ptr<const FilterFactory> buildKeepalive(const YAML::Node& node,
                                                    const std::string& path,
                                                    config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!node.IsMap()) {
    diags.error(node, path, "must be a map: { interval: 20s, timeout: 10s }");
    return nullptr;
  }
  if (!config::checkKeys(node, path, {"interval", "timeout", "sides"}, diags)) return nullptr;
  KeepaliveFilter::Settings settings;
  auto readPositive = [&](const char* key, std::chrono::milliseconds& out) {
    YAML::Node value = node[key];
    if (!value) return;
    auto duration = config::readDuration(value, path + "." + key, diags);
    if (!duration) return;
    if (duration->count() <= 0) {
      diags.error(value, path + "." + key, "must be greater than 0");
    } else {
      out = *duration;
    }
  };
  readPositive("interval", settings.interval);
  readPositive("timeout", settings.timeout);
  if (YAML::Node sides = node["sides"]) {
    const std::string text = sides.IsScalar() ? sides.Scalar() : "";
    if (text == "client") {
      settings.sides = {true, false};
    } else if (text == "upstream") {
      settings.sides = {false, true};
    } else if (text != "both") {
      diags.error(sides, path + ".sides", "must be both, client or upstream, not \"" + text + "\"");
    }
  }
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<KeepaliveFilter>(settings);
}

WSGATE_REGISTER_FILTER("keepalive", buildKeepalive);

}  // namespace

std::unique_ptr<MessageFilter> KeepaliveFilter::newMessageFilter(
    const SessionContext& context) const {
  return std::make_unique<KeepaliveSession>(settings_, context.control);
}

KeepaliveSession::KeepaliveSession(const KeepaliveFilter::Settings& settings,
                                   SessionControl* control)
    : settings_(settings), control_(control) {}

void KeepaliveSession::onStart(Clock::time_point now) {
  for (Leg& leg : legs_) leg.heard = now;
  scheduleNext();
}

FrameVerdict KeepaliveSession::onFrame(const FrameEvent& frame) {
  Leg& leg = legs_[static_cast<size_t>(sourceOf(frame.direction))];
  leg.heard = frame.now;
  leg.pinged = false;
  return {};
}

void KeepaliveSession::onTimer(Clock::time_point now) {
  for (size_t side = 0; side < legs_.size(); ++side) {
    if (!settings_.sides[side]) continue;
    Leg& leg = legs_[side];
    if (leg.pinged) {
      if (now < leg.answer_by) continue;
      control_->abandon(static_cast<Side>(side), kDeadReason[side]);
      return;  // the session is ending
    }
    if (now - leg.heard < settings_.interval) continue;
    if (control_->ping(static_cast<Side>(side))) {
      leg.pinged = true;
      leg.answer_by = now + settings_.timeout;
    } else {
      leg.heard = now;  // the leg is closing: look again after an interval, not at once
    }
  }
  scheduleNext();
}

void KeepaliveSession::scheduleNext() {
  Clock::time_point next = Clock::time_point::max();
  for (size_t side = 0; side < legs_.size(); ++side) {
    if (!settings_.sides[side]) continue;
    const Leg& leg = legs_[side];
    next = std::min(next, leg.pinged ? leg.answer_by : leg.heard + settings_.interval);
  }
  if (next != Clock::time_point::max()) control_->wakeAt(next);
}

}  // namespace wsgate::filters
