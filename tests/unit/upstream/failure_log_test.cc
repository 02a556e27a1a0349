#include "upstream/failure_log.h"

#include <gtest/gtest.h>

namespace wsgate::gateway {
namespace {

using std::chrono::milliseconds;

TEST(FailureLog, LogsTheFirstFailureWithNothingFolded) {
  FailureLog log;
  auto admitted = log.admit(FailureLog::Clock::time_point{} + milliseconds(5000));
  ASSERT_TRUE(admitted);
  EXPECT_EQ(admitted->folded, 0u);
  EXPECT_EQ(admitted->suffix(), "");
}

TEST(FailureLog, FoldsFailuresWithinTheIntervalIntoTheNextLine) {
  FailureLog log;
  const auto start = FailureLog::Clock::time_point{} + milliseconds(5000);
  ASSERT_TRUE(log.admit(start));
  for (int i = 1; i <= 250; ++i) EXPECT_FALSE(log.admit(start + milliseconds(i * 3)));
  auto admitted = log.admit(start + milliseconds(1500));
  ASSERT_TRUE(admitted);
  EXPECT_EQ(admitted->folded, 250u);
  EXPECT_EQ(admitted->suffix(), " (250 more in the last 1.5s)");
}

TEST(FailureLog, StartsAFreshCountAfterEachLine) {
  FailureLog log;
  const auto start = FailureLog::Clock::time_point{} + milliseconds(5000);
  ASSERT_TRUE(log.admit(start));
  EXPECT_FALSE(log.admit(start + milliseconds(10)));
  ASSERT_TRUE(log.admit(start + milliseconds(1000)));
  auto admitted = log.admit(start + milliseconds(2000));
  ASSERT_TRUE(admitted);
  EXPECT_EQ(admitted->folded, 0u);
  EXPECT_EQ(admitted->suffix(), "");
}

}  // namespace
}  // namespace wsgate::gateway
