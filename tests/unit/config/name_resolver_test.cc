#include "config/name_resolver.h"

#include <algorithm>
#include <chrono>

#include <gtest/gtest.h>

namespace wsgate::config {
namespace {

using std::chrono::milliseconds;

// /etc/hosts names localhost on every Debian system, so this needs no DNS server.
TEST(SystemNameResolver, AnswersEveryNameInOrderWithoutDuplicates) {
  const auto start = std::chrono::steady_clock::now();
  auto answers = systemNameResolver(milliseconds(5000))({"localhost", "no-such-host.invalid",
                                                         "localhost"});
  ASSERT_EQ(answers.size(), 3u);
  for (size_t i : {0u, 2u}) {
    EXPECT_TRUE(answers[i].error.empty()) << answers[i].error;
    ASSERT_FALSE(answers[i].ips.empty());
    EXPECT_NE(std::find(answers[i].ips.begin(), answers[i].ips.end(), "127.0.0.1"),
              answers[i].ips.end());
    for (size_t j = 0; j < answers[i].ips.size(); ++j) {
      for (size_t k = j + 1; k < answers[i].ips.size(); ++k) {
        EXPECT_NE(answers[i].ips[j], answers[i].ips[k]);
      }
    }
  }
  // .invalid never resolves (RFC 6761); with no reachable DNS server the bound ends the wait.
  EXPECT_TRUE(answers[1].ips.empty());
  EXPECT_FALSE(answers[1].error.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000) + milliseconds(1000));
}

TEST(SystemNameResolver, NoNamesNoLookup) {
  EXPECT_TRUE(systemNameResolver(milliseconds(10))({}).empty());
}

}  // namespace
}  // namespace wsgate::config
