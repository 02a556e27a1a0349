#include "filters/subprotocol.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"
#include "filters/registry.h"

namespace wsgate::filters {
namespace {

struct Built {
  std::shared_ptr<const FilterFactory> factory;
  std::string errors;
};

Built build(const std::string& yaml) {
  config::Diagnostics diags("f.yaml");
  auto built = Registry::global().build("subprotocol", YAML::Load(yaml),
                                        "routes[0].filters[1].subprotocol", diags);
  return {std::static_pointer_cast<const FilterFactory>(built), diags.format()};
}

class FakeRequest final : public HandshakeRequest {
 public:
  explicit FakeRequest(std::optional<std::string> offers) : offers_(std::move(offers)) {}
  std::optional<std::string_view> header(std::string_view name) const override {
    if (name == "Sec-WebSocket-Protocol" && offers_) return *offers_;
    return std::nullopt;
  }
  std::string_view target() const override { return "/"; }
  std::string_view clientAddress() const override { return "127.0.0.1"; }
  std::string_view routeName() const override { return "r"; }
  bool secure() const override { return false; }
  std::string_view clientCertificate() const override { return {}; }

 private:
  std::optional<std::string> offers_;
};

HandshakeVerdict offer(const Built& b, std::optional<std::string> offers) {
  return b.factory->handshakeFilter()->onHandshake(FakeRequest(std::move(offers)));
}

HandshakeVerdict chosen(const Built& b, std::optional<std::string> offers,
                        std::string_view protocol) {
  return b.factory->handshakeFilter()->onUpstreamAccepted(FakeRequest(std::move(offers)), protocol);
}

TEST(SubprotocolFilter, IsAHandshakeFilterOnly) {
  auto b = build(R"({ allow: ["chat.v1"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->name(), "subprotocol");
  EXPECT_NE(b.factory->handshakeFilter(), nullptr);
  EXPECT_EQ(b.factory->newMessageFilter({}), nullptr);
}

TEST(SubprotocolFilter, RejectsBadConfigNamingPathAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{ require: true }",
       "f.yaml:1:1: routes[0].filters[1].subprotocol: missing required key "
       "\"allow\""},
      {"{ allow: [] }", "subprotocol.allow: must be a non-empty list"},
      {"{ allow: chat }", "subprotocol.allow: must be a non-empty list"},
      {R"({ allow: ["chat v1"] })",
       "f.yaml:1:11: routes[0].filters[1].subprotocol.allow[0]: "
       "invalid subprotocol \"chat v1\""},
      {R"({ allow: ["a,b"] })", "subprotocol.allow[0]: invalid subprotocol"},
      {R"({ allow: ["a", "a"] })", "subprotocol.allow[1]: \"a\" is listed twice"},
      {R"({ allow: ["a"], require: maybe })", "subprotocol.require"},
      {R"({ allow: ["a"], requires: true })",
       "subprotocol.requires: unknown key \"requires\" (did you mean \"require\"?)"},
  };
  for (const auto& [yaml, want] : cases) {
    auto b = build(yaml);
    EXPECT_FALSE(b.factory) << yaml;
    EXPECT_NE(b.errors.find(want), std::string::npos) << yaml << "\n" << b.errors;
  }
}

TEST(SubprotocolFilter, RequireRefusesAClientOfferingNoneWith400NamingTheAccepted) {
  auto b = build(R"({ allow: ["chat.v2", "chat.v1"], require: true })");
  ASSERT_TRUE(b.factory) << b.errors;
  for (std::optional<std::string> none :
       {std::optional<std::string>(), std::optional<std::string>(""),
        std::optional<std::string>(" , ")}) {
    auto refused = offer(b, none);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400u);
    EXPECT_EQ(refused->label, "subprotocol_missing");
    EXPECT_NE(refused->reason.find("chat.v2, chat.v1"), std::string::npos) << refused->reason;
  }
  EXPECT_FALSE(offer(b, "chat.v1"));
}

TEST(SubprotocolFilter, WithoutRequireARequestWithoutSubprotocolPasses) {
  auto b = build(R"({ allow: ["chat.v2"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_FALSE(offer(b, std::nullopt));
  EXPECT_FALSE(chosen(b, std::nullopt, ""));
}

TEST(SubprotocolFilter, PassesWhenAtLeastOneOfferIsAllowed) {
  auto b = build(R"({ allow: ["chat.v2", "chat.v1"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_FALSE(offer(b, "chat.v2"));
  EXPECT_FALSE(offer(b, "legacy, chat.v1"));
  EXPECT_FALSE(offer(b, "  chat.v1\t,x"));
  for (const char* bad : {"legacy", "chat.v3, legacy", "CHAT.V1", "chat.v1x", "chat"}) {
    auto refused = offer(b, std::string(bad));
    ASSERT_TRUE(refused) << bad;
    EXPECT_EQ(refused->status, 400u);
    EXPECT_EQ(refused->label, "subprotocol_not_allowed");
    EXPECT_NE(refused->reason.find("chat.v2, chat.v1"), std::string::npos);
  }
}

TEST(SubprotocolFilter, BackendMustChooseAnAllowedOfferedProtocol) {
  auto b = build(R"({ allow: ["chat.v2", "chat.v1"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_FALSE(chosen(b, "legacy, chat.v1", "chat.v1"));
  EXPECT_FALSE(chosen(b, "legacy, chat.v1", ""));
  for (auto [offers, protocol] : {std::pair{"legacy, chat.v1", "legacy"},  // unlisted
                                  std::pair{"chat.v1", "chat.v2"},         // not offered
                                  std::pair{"chat.v1", "chat.v1, chat.v2"}}) {
    auto refused = chosen(b, std::string(offers), protocol);
    ASSERT_TRUE(refused) << protocol;
    EXPECT_EQ(refused->status, 502u);
    EXPECT_EQ(refused->label, "upstream_protocol");
  }
  EXPECT_TRUE(chosen(b, std::nullopt, "chat.v1"));
}

TEST(SubprotocolFilter, WithRequireTheBackendMustChooseOne) {
  auto b = build(R"({ allow: ["chat.v1"], require: true })");
  ASSERT_TRUE(b.factory) << b.errors;
  auto refused = chosen(b, "chat.v1", "");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 502u);
  EXPECT_EQ(refused->label, "upstream_protocol");
}

}  // namespace
}  // namespace wsgate::filters
