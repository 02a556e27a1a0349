#include "filters/max_duration.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <optional>
#include <random>
#include <string>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

constexpr double kMaxJitter = 0.5;  // beyond half, "max" would no longer say much
// Keeps the deadline (in the clock's nanoseconds, jitter included) far from overflowing.
constexpr std::chrono::hours kLongestMax{24 * 365};

// One generator per worker thread, seeded once: sessions draw from it with no lock.
double randomUnit() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

class MaxDurationSession final : public MessageFilter {
 public:
  MaxDurationSession(const MaxDurationFilter& config, const SessionContext& context)
      : config_(config), started_(context.started), control_(context.control) {}

  void onStart(Clock::time_point) override {
    deadline_ = config_.deadline(started_, randomUnit());
    if (control_) control_->wakeAt(deadline_);
  }
  FrameVerdict onFrame(const FrameEvent&) override { return {}; }
  void onTimer(Clock::time_point now) override {
    if (!control_) return;
    if (now < deadline_) return control_->wakeAt(deadline_);  // woken early: wait on
    control_->goAway(1001, "session too old");
  }

 private:
  // A reference is enough: the session holds the config snapshot that owns the factory.
  const MaxDurationFilter& config_;
  Clock::time_point started_;
  SessionControl* control_;
  Clock::time_point deadline_{};
};

// "10%", "2.5%", "0%".
std::optional<double> readJitter(const YAML::Node& node, const std::string& path,
                                 config::Diagnostics& diags) {
  const std::string text = node.IsScalar() ? node.Scalar() : "";
  double percent = -1;
  if (text.size() >= 2 && text.back() == '%') {
    const char* end = text.data() + text.size() - 1;
    auto [at, ec] = std::from_chars(text.data(), end, percent);
    if (ec != std::errc() || at != end) percent = -1;
  }
  if (!(percent >= 0 && percent <= kMaxJitter * 100)) {
    diags.error(node, path,
                "must be a percentage from 0% to 50%, not \"" +
                    (node.IsScalar() ? text : std::string("(not a scalar)")) + "\"");
    return std::nullopt;
  }
  return percent / 100;
}

std::shared_ptr<const FilterFactory> buildMaxDuration(const YAML::Node& node,
                                                      const std::string& path,
                                                      config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"max", "jitter"}, diags)) return nullptr;
  std::chrono::milliseconds max{0};
  if (const YAML::Node value = node["max"]) {
    if (auto parsed = config::readDuration(value, path + ".max", diags)) {
      if (parsed->count() <= 0 || *parsed > kLongestMax) {
        diags.error(value, path + ".max",
                    "must be from 1ms to 8760h (a year), not \"" + value.Scalar() + "\"");
      } else {
        max = *parsed;
      }
    }
  } else {
    diags.error(node, path, "set max (e.g. max: 1h)");
  }
  double jitter = 0;
  if (const YAML::Node value = node["jitter"]) {
    if (auto parsed = readJitter(value, path + ".jitter", diags)) jitter = *parsed;
  }
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<MaxDurationFilter>(max, jitter);
}

WSGATE_REGISTER_FILTER("max_duration", buildMaxDuration);

}  // namespace

std::unique_ptr<MessageFilter> MaxDurationFilter::newMessageFilter(
    const SessionContext& context) const {
  return std::make_unique<MaxDurationSession>(*this, context);
}

Clock::time_point MaxDurationFilter::deadline(Clock::time_point started, double unit) const {
  const double factor = 1.0 + jitter_ * (2.0 * unit - 1.0);
  const auto lifetime =
      std::chrono::duration<double, std::milli>(static_cast<double>(max_.count()) * factor);
  return started + std::chrono::duration_cast<Clock::duration>(lifetime);
}

}  // namespace wsgate::filters
