#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/filter.h"
#include "filters/message_size.h"
#include "filters/origin.h"
#include "filters/registry.h"

namespace wsgate::filters {
namespace {

struct Built {
  std::shared_ptr<const FilterFactory> factory;
  std::string errors;
};

Built build(const std::string& name, const std::string& yaml) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build(name, YAML::Load(yaml), "f." + name, diags);
  return {std::static_pointer_cast<const FilterFactory>(built), diags.format()};
}

class FakeRequest final : public HandshakeRequest {
 public:
  explicit FakeRequest(std::optional<std::string> origin) : origin_(std::move(origin)) {}
  std::optional<std::string_view> header(std::string_view name) const override {
    if (name == "Origin" && origin_) return *origin_;
    return std::nullopt;
  }
  std::string_view target() const override { return "/"; }
  std::string_view clientAddress() const override { return "127.0.0.1"; }
  std::string_view routeName() const override { return "r"; }

 private:
  std::optional<std::string> origin_;
};

TEST(Registry, KnowsTheBuiltInFilters) {
  EXPECT_TRUE(Registry::global().knows("origin"));
  EXPECT_TRUE(Registry::global().knows("message_size"));
  EXPECT_FALSE(Registry::global().knows("nope"));
  EXPECT_EQ(Registry::global().names(), "message_size, origin");
}

TEST(OriginFilter, AllowListWithExactAndWildcardEntries) {
  auto b = build("origin", R"({ allow: ["https://chat.example.com", "https://*.example.org:8443"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  const HandshakeFilter* f = b.factory->handshakeFilter();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(b.factory->newMessageFilter(), nullptr);
  const std::vector<std::pair<std::optional<std::string>, bool>> cases = {
      {"https://chat.example.com", true},     {"HTTPS://Chat.Example.COM", true},
      {"https://chat.example.com/", true},    {"http://chat.example.com", false},
      {"https://chat.example.com:444", false}, {"https://evil.com", false},
      {"https://a.example.org:8443", true},   {"https://a.b.example.org:8443", true},
      {"https://example.org:8443", false},    {"https://a.example.org", false},
      {"null", false},                        {std::nullopt, true},
  };
  for (const auto& [origin, allowed] : cases) {
    auto verdict = f->onHandshake(FakeRequest(origin));
    EXPECT_EQ(!verdict.has_value(), allowed) << origin.value_or("(none)");
    if (verdict) {
      EXPECT_EQ(verdict->status, 403u);
    }
  }
}

TEST(OriginFilter, RequireRejectsMissingOrigin) {
  auto b = build("origin", R"({ allow: ["https://a.test"], require: true })");
  ASSERT_TRUE(b.factory) << b.errors;
  auto verdict = b.factory->handshakeFilter()->onHandshake(FakeRequest(std::nullopt));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->status, 403u);
  EXPECT_EQ(verdict->reason, "origin required");
}

TEST(OriginFilter, ConfigErrorsNameThePath) {
  EXPECT_EQ(build("origin", "{ allow: [] }").errors,
            "f.yaml:1:10: f.origin.allow: must be a non-empty list of origins\n");
  EXPECT_EQ(build("origin", R"({ allow: ["https://ok.test", "ftp:/bad"] })").errors,
            "f.yaml:1:30: f.origin.allow[1]: invalid origin \"ftp:/bad\" (expected "
            "scheme://host[:port] or scheme://*.domain[:port])\n");
  EXPECT_EQ(build("origin", "{ require: true }").errors,
            "f.yaml:1:1: f.origin: missing required key \"allow\"\n");
  EXPECT_EQ(build("origin", R"({ allow: ["https://a.test"], requre: true })").errors,
            "f.yaml:1:30: f.origin.requre: unknown key \"requre\" (did you mean \"require\"?)\n");
}

FrameEvent frame(Direction d, uint8_t opcode, uint64_t length, uint64_t message) {
  return {d, opcode, true, false, length, message};
}

TEST(MessageSizeFilter, ClosesWith1009OverFrameOrMessageLimit) {
  auto b = build("message_size", "{ max_frame_bytes: 100, max_message_bytes: 1KiB }");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->handshakeFilter(), nullptr);
  auto f = b.factory->newMessageFilter();
  ASSERT_TRUE(f);
  const auto c2u = Direction::kClientToUpstream;
  EXPECT_FALSE(f->onFrame(frame(c2u, 2, 100, 100)));
  auto big_frame = f->onFrame(frame(c2u, 2, 101, 101));
  ASSERT_TRUE(big_frame);
  EXPECT_EQ(big_frame->code, 1009);
  EXPECT_EQ(big_frame->reason, "frame too big");
  EXPECT_FALSE(f->onFrame(frame(c2u, 0, 100, 1024)));
  auto big_message = f->onFrame(frame(c2u, 0, 100, 1025));
  ASSERT_TRUE(big_message);
  EXPECT_EQ(big_message->reason, "message too big");
  // Control frames are not data: never limited here.
  EXPECT_FALSE(f->onFrame(frame(c2u, 9, 125, 0)));
}

TEST(MessageSizeFilter, DirectionLimitsWhereItApplies) {
  auto b = build("message_size", "{ max_message_bytes: 10, direction: client_to_upstream }");
  ASSERT_TRUE(b.factory) << b.errors;
  auto f = b.factory->newMessageFilter();
  EXPECT_TRUE(f->onFrame(frame(Direction::kClientToUpstream, 1, 11, 11)));
  EXPECT_FALSE(f->onFrame(frame(Direction::kUpstreamToClient, 1, 11, 11)));
}

TEST(MessageSizeFilter, ConfigErrors) {
  EXPECT_EQ(build("message_size", "{}").errors,
            "f.yaml:1:1: f.message_size: set max_frame_bytes, max_message_bytes or both\n");
  EXPECT_EQ(build("message_size", "{ max_message_bytes: 0 }").errors,
            "f.yaml:1:22: f.message_size.max_message_bytes: must be greater than 0\n");
  EXPECT_EQ(build("message_size", "{ max_message_bytes: 1, direction: up }").errors,
            "f.yaml:1:36: f.message_size.direction: must be both, client_to_upstream or "
            "upstream_to_client, not \"up\"\n");
}

}  // namespace
}  // namespace wsgate::filters
