#include "filters/origin.h"

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
  auto built = Registry::global().build("origin", YAML::Load(yaml), "f.origin", diags);
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
  bool secure() const override { return false; }
  std::string_view clientCertificate() const override { return {}; }

 private:
  std::optional<std::string> origin_;
};

TEST(OriginFilter, IsAHandshakeFilterOnly) {
  auto b = build(R"({ allow: ["https://a.test"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_EQ(b.factory->name(), "origin");
  EXPECT_NE(b.factory->handshakeFilter(), nullptr);
  EXPECT_EQ(b.factory->newMessageFilter({}), nullptr);
}

TEST(OriginFilter, MatchesTheAllowListExactlyAndWildcardsAtAnyDepth) {
  auto b = build(R"({ allow: ["https://chat.example.com", "https://*.example.org:8443",
                              "http://[::1]:8080", "wss://Mixed.Case.test"] })");
  ASSERT_TRUE(b.factory) << b.errors;
  const HandshakeFilter* f = b.factory->handshakeFilter();
  const std::vector<std::pair<std::optional<std::string>, bool>> cases = {
      {"https://chat.example.com", true},
      {"HTTPS://Chat.Example.COM", true},
      {"https://chat.example.com/", true},
      {"https://chat.example.com:443", true},  // the default port is no port
      {"http://chat.example.com", false},      // scheme differs
      {"https://chat.example.com:444", false},
      {"https://chat.example.com.evil.com", false},
      {"https://evilchat.example.com", false},
      {"https://sub.chat.example.com", false},  // exact entries have no subdomains
      {"https://evil.com", false},
      {"https://a.example.org:8443", true},
      {"https://a.b.example.org:8443", true},
      {"https://example.org:8443", false},  // wildcard needs at least one label
      {"https://badexample.org:8443", false},
      {"https://a.example.org", false},  // port differs
      {"https://.example.org:8443", false},
      {"http://[::1]:8080", true},
      {"http://[::1]", false},
      {"wss://mixed.case.test", true},
      {"null", false},
      {"", false},
      {"https://user@chat.example.com", false},
      {"https://*.example.org:8443", false},  // a wildcard is never a valid Origin
      {std::nullopt, true},
  };
  for (const auto& [origin, allowed] : cases) {
    auto verdict = f->onHandshake(FakeRequest(origin));
    EXPECT_EQ(!verdict.has_value(), allowed) << origin.value_or("(none)");
    if (verdict) {
      EXPECT_EQ(verdict->status, 403u);
      EXPECT_EQ(verdict->reason, "origin not allowed");
    }
  }
}

TEST(OriginFilter, RequireRejectsMissingOrigin) {
  auto b = build(R"({ allow: ["https://a.test"], require: true })");
  ASSERT_TRUE(b.factory) << b.errors;
  const HandshakeFilter* f = b.factory->handshakeFilter();
  auto verdict = f->onHandshake(FakeRequest(std::nullopt));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->status, 403u);
  EXPECT_EQ(verdict->reason, "origin required");
  EXPECT_FALSE(f->onHandshake(FakeRequest("https://a.test")));
}

TEST(OriginFilter, RequireFalseLetsNonBrowserClientsThrough) {
  auto b = build(R"({ allow: ["https://a.test"], require: false })");
  ASSERT_TRUE(b.factory) << b.errors;
  EXPECT_FALSE(b.factory->handshakeFilter()->onHandshake(FakeRequest(std::nullopt)));
}

TEST(OriginFilter, ParsesAllowEntriesIntoLowerCasePatterns) {
  auto p = OriginFilter::parse("HTTPS://*.Example.ORG:8443", true);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->scheme, "https");
  EXPECT_EQ(p->host, ".example.org");
  EXPECT_TRUE(p->wildcard);
  EXPECT_EQ(p->port, 8443);
  auto q = OriginFilter::parse("wss://a.test:443", true);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->port, 0);
}

TEST(OriginFilter, RefusesMalformedAllowEntries) {
  for (const char* entry : {"ftp:/bad", "chat.example.com", "*.example.com", "://a.test",
                            "ht tp://a.test", "https://", "https://*.", "https://*",
                            "https://a.*.test", "https://*.*.test", "https://a.test:",
                            "https://a.test:0", "https://a.test:65536", "https://a.test:8o",
                            "https://a.test/path", "https://user@a.test", "https://exa mple.com",
                            "https://a..test", "https://a.test.", "https://[::1", "https://[zz]",
                            "https://[::1]x"}) {
    EXPECT_FALSE(OriginFilter::parse(entry, true)) << entry;
  }
}

TEST(OriginFilter, ConfigErrorsNameThePath) {
  EXPECT_EQ(build("{ allow: [] }").errors,
            "f.yaml:1:10: f.origin.allow: must be a non-empty list of origins\n");
  EXPECT_EQ(build(R"({ allow: "https://a.test" })").errors,
            "f.yaml:1:10: f.origin.allow: must be a non-empty list of origins\n");
  EXPECT_EQ(build(R"({ allow: ["https://ok.test", "ftp:/bad"] })").errors,
            "f.yaml:1:30: f.origin.allow[1]: invalid origin \"ftp:/bad\" (expected "
            "scheme://host[:port] or scheme://*.domain[:port])\n");
  EXPECT_EQ(build("{ require: true }").errors,
            "f.yaml:1:1: f.origin: missing required key \"allow\"\n");
  EXPECT_EQ(build(R"({ allow: ["https://a.test"], require: maybe })").errors,
            "f.yaml:1:39: f.origin.require: must be true or false, not \"maybe\"\n");
  EXPECT_EQ(build("[https://a.test]").errors, "f.yaml:1:1: f.origin: must be a map\n");
}

TEST(OriginFilter, UnknownKeyFailsTheBuild) {
  auto b = build(R"({ allow: ["https://a.test"], requre: true })");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:1:30: f.origin.requre: unknown key \"requre\" (did you mean \"require\"?)\n");
}

TEST(OriginFilter, ReportsEveryBadEntryAtOnce) {
  auto b = build("allow:\n  - https://a.test\n  - nope\n  - https://b.test:99999\n");
  EXPECT_EQ(b.factory, nullptr);
  EXPECT_EQ(b.errors,
            "f.yaml:3:5: f.origin.allow[1]: invalid origin \"nope\" (expected "
            "scheme://host[:port] or scheme://*.domain[:port])\n"
            "f.yaml:4:5: f.origin.allow[2]: invalid origin \"https://b.test:99999\" (expected "
            "scheme://host[:port] or scheme://*.domain[:port])\n");
}

}  // namespace
}  // namespace wsgate::filters
