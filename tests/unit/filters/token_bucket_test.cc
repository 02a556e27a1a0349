#include "filters/token_bucket.h"

#include <gtest/gtest.h>

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

TEST(TokenBucketTest, StartsFullThenRefusesUntilTokensComeAtTheRate) {
  const auto t0 = Clock::now();
  TokenBucket bucket(100, 10, t0);  // 100/s, burst 10
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(bucket.take(1, t0)) << i;
  EXPECT_FALSE(bucket.take(1, t0));
  EXPECT_FALSE(bucket.take(1, t0 + 9ms));
  EXPECT_TRUE(bucket.take(1, t0 + 10ms));  // one token per 10 ms
  EXPECT_FALSE(bucket.take(1, t0 + 10ms));
}

TEST(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  const auto t0 = Clock::now();
  TokenBucket bucket(1000, 5, t0);
  EXPECT_DOUBLE_EQ(bucket.tokens(t0 + 1h), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.take(1, t0 + 1h));
  EXPECT_FALSE(bucket.take(1, t0 + 1h));
}

TEST(TokenBucketTest, OverALongRunTheRateIsHeld) {
  auto now = Clock::now();
  TokenBucket bucket(100, 20, now);
  int taken = 0;
  // A sender trying every millisecond for 5 s: the burst, then 100 per second.
  for (int ms = 0; ms < 5000; ++ms, now += 1ms) {
    while (bucket.take(1, now)) ++taken;
  }
  EXPECT_GE(taken, 20 + 499);
  EXPECT_LE(taken, 20 + 500);
}

TEST(TokenBucketTest, ARequestOverTheBurstPassesWhenFullAndLeavesADebt) {
  const auto t0 = Clock::now();
  TokenBucket bucket(1000, 100, t0);  // bytes: 1000/s, burst 100
  EXPECT_TRUE(bucket.take(300, t0));  // a 300-byte message when full
  EXPECT_DOUBLE_EQ(bucket.tokens(t0), -200);
  EXPECT_FALSE(bucket.take(1, t0 + 200ms));  // the debt is paid first
  EXPECT_TRUE(bucket.take(1, t0 + 201ms));
}

TEST(TokenBucketTest, AvailableAtIsWhenTakeFirstSucceeds) {
  const auto t0 = Clock::now();
  TokenBucket bucket(10, 2, t0);
  EXPECT_EQ(bucket.availableAt(1, t0), t0);
  ASSERT_TRUE(bucket.take(2, t0));
  const auto at = bucket.availableAt(1, t0);
  EXPECT_GE(at - t0, 100ms);
  EXPECT_LT(at - t0, 101ms);
  EXPECT_FALSE(bucket.take(1, at - 1ms));
  EXPECT_TRUE(bucket.take(1, at));
  // Over the burst: when the bucket is full again.
  EXPECT_EQ(bucket.availableAt(50, at) - at, 200ms);
}

TEST(TokenBucketTest, AClockReadEarlierThanTheLastDoesNotRefillOrBreak) {
  const auto t0 = Clock::now();
  TokenBucket bucket(100, 1, t0);
  ASSERT_TRUE(bucket.take(1, t0 + 1s));
  EXPECT_FALSE(bucket.take(1, t0));  // an older reading
  EXPECT_TRUE(bucket.take(1, t0 + 1s + 10ms));
}

TEST(TokenBucketTest, ChargeTakesWhateverIsThereAndTheDebtIsPaidAtTheRate) {
  const auto t0 = Clock::now();
  TokenBucket bucket(100, 10, t0);
  for (int i = 0; i < 30; ++i) bucket.charge(1, t0);  // 20 over the burst
  EXPECT_DOUBLE_EQ(bucket.tokens(t0), -20);
  const auto at = bucket.availableAt(1, t0);  // 20 owed, then one to take
  EXPECT_GE(at - t0, 210ms);
  EXPECT_LT(at - t0, 211ms);
  EXPECT_FALSE(bucket.take(1, t0 + 209ms));
  EXPECT_TRUE(bucket.take(1, at));
}

}  // namespace
}  // namespace wsgate::gateway
