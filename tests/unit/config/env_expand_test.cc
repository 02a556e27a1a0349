#include "config/env_expand.h"

#include <map>

#include <gtest/gtest.h>

namespace wsgate::config {
namespace {

struct Expanded {
  std::string text;
  std::string errors;
};

Expanded expand(const std::string& text) {
  const std::map<std::string, std::string> env = {
      {"PORT", "8443"}, {"HOST", "10.0.0.7"}, {"EMPTY", ""}, {"BROKEN", "a\nb: c"}};
  Diagnostics diags("f.yaml");
  const std::string out = expandVariables(
      text,
      [&](const std::string& name) -> std::optional<std::string> {
        auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
      },
      diags);
  return {out, diags.format()};
}

TEST(ExpandVariables, SetVariablesAndDefaults) {
  auto e = expand("address: ${HOST}:${PORT}\nname: ${NAME:-edge}\nx: '${EMPTY:-unused}'\n");
  EXPECT_EQ(e.errors, "");
  EXPECT_EQ(e.text, "address: 10.0.0.7:8443\nname: edge\nx: ''\n");
}

TEST(ExpandVariables, AnUnsetVariableWithoutDefaultIsAnErrorAtItsLine) {
  auto e = expand("a: 1\nsecret: ${API_TOKEN}\n");
  EXPECT_NE(e.errors.find("f.yaml:2:9:"), std::string::npos) << e.errors;
  EXPECT_NE(e.errors.find("${API_TOKEN} is not set"), std::string::npos) << e.errors;
}

TEST(ExpandVariables, LiteralsCommentsAndBadNames) {
  EXPECT_EQ(expand("a: $${HOME} and $5\n").text, "a: ${HOME} and $5\n");
  auto comment = expand("a: 1  # ${NOT_SET} is fine here\n# ${ALSO}\nb: \"#${PORT}\"\n");
  EXPECT_EQ(comment.errors, "");
  EXPECT_EQ(comment.text, "a: 1  # ${NOT_SET} is fine here\n# ${ALSO}\nb: \"#8443\"\n");
  EXPECT_NE(expand("a: ${1X}\n").errors.find("variable name"), std::string::npos);
  EXPECT_NE(expand("a: ${PORT\nb: 2}\n").errors.find("f.yaml:1:4: (variables): unclosed"),
            std::string::npos);
}

TEST(ExpandVariables, AValueWithALineBreakIsRefused) {
  auto e = expand("a: ${BROKEN}\n");
  EXPECT_NE(e.errors.find("line break"), std::string::npos) << e.errors;
}

}  // namespace
}  // namespace wsgate::config
