#include "io/tls_ticket_keys.h"

#include <gtest/gtest.h>

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;

TEST(TicketKeysTest, ANewKeySealsEachPeriodAndThePreviousOneStillOpensForOnePeriod) {
  TicketKeys keys(10s);
  const auto t0 = TicketKeys::Clock::now();
  const TicketKeys::Name first = keys.sealingName(t0);
  EXPECT_EQ(keys.opens(first, t0 + 5s), 1);
  EXPECT_EQ(keys.sealingName(t0 + 5s), first);

  const TicketKeys::Name second = keys.sealingName(t0 + 11s);
  EXPECT_NE(first, second);
  EXPECT_EQ(keys.opens(second, t0 + 11s), 1);
  EXPECT_EQ(keys.opens(first, t0 + 11s), 2);  // still opens; renewed with the current key

  const TicketKeys::Name third = keys.sealingName(t0 + 22s);
  EXPECT_EQ(keys.opens(first, t0 + 22s), 0);  // two periods old: a full handshake
  EXPECT_EQ(keys.opens(second, t0 + 22s), 2);
  EXPECT_EQ(keys.opens(third, t0 + 22s), 1);
}

TEST(TicketKeysTest, AfterALongQuietSpellNoOldKeyOpens) {
  TicketKeys keys(10s);
  const auto t0 = TicketKeys::Clock::now();
  const TicketKeys::Name first = keys.sealingName(t0);
  EXPECT_EQ(keys.opens(first, t0 + 100s), 0);
  TicketKeys::Name unknown{};
  EXPECT_EQ(keys.opens(unknown, t0 + 100s), 0);
}

TEST(TicketKeysTest, TwoRingsNeverShareAKey) {
  TicketKeys a;
  TicketKeys b;
  const auto now = TicketKeys::Clock::now();
  EXPECT_NE(a.sealingName(now), b.sealingName(now));
  EXPECT_EQ(b.opens(a.sealingName(now), now), 0);
}

}  // namespace
}  // namespace wsgate::gateway
