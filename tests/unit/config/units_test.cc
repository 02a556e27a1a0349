#include "config/units.h"

#include <gtest/gtest.h>

namespace wsgate::config {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, ReadsEachUnit) {
  EXPECT_EQ(parseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(parseDuration("30s"), milliseconds(30'000));
  EXPECT_EQ(parseDuration("5m"), milliseconds(300'000));
  EXPECT_EQ(parseDuration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parseDuration("0s"), milliseconds(0));
}

TEST(ParseDuration, RejectsMissingUnitOrNumberAndGarbage) {
  for (const char* bad : {"", "10", "s", "-1s", "1.5s", "10 sec", "1d", "99999999999999999999h"}) {
    EXPECT_FALSE(parseDuration(bad)) << bad;
  }
}

TEST(ParseSize, ReadsEachUnit) {
  EXPECT_EQ(parseSize("512"), 512u);
  EXPECT_EQ(parseSize("512B"), 512u);
  EXPECT_EQ(parseSize("64KiB"), 64u * 1024);
  EXPECT_EQ(parseSize("1MiB"), 1u << 20);
  EXPECT_EQ(parseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(parseSize("1KB"), 1000u);
  EXPECT_EQ(parseSize("3MB"), 3'000'000u);
  EXPECT_EQ(parseSize("1GB"), 1'000'000'000u);
}

TEST(ParseSize, RejectsBadUnitsNegativeAndOverflow) {
  for (const char* bad : {"", "KiB", "-1", "1.5MiB", "1kib", "1TiB", "99999999999GiB"}) {
    EXPECT_FALSE(parseSize(bad)) << bad;
  }
}

}  // namespace
}  // namespace wsgate::config

namespace wsgate::config {
namespace {

TEST(ParseRate, CountsAndSizesPerTime) {
  EXPECT_DOUBLE_EQ(*parseRate("100/s"), 100.0);
  EXPECT_DOUBLE_EQ(*parseRate("1MiB/s"), 1048576.0);
  EXPECT_DOUBLE_EQ(*parseRate("600/m"), 10.0);
  EXPECT_DOUBLE_EQ(*parseRate("3600/h"), 1.0);
  EXPECT_DOUBLE_EQ(*parseRate("20/500ms"), 40.0);
  EXPECT_DOUBLE_EQ(*parseRate("5/10s"), 0.5);
}

TEST(ParseRate, RefusesWhatIsNotARateAbove0) {
  for (const char* text : {"", "100", "/s", "100/", "0/s", "-1/s", "100/x", "100/0s", "1e3/s",
                           "100 per s", "100/s/s"}) {
    EXPECT_FALSE(parseRate(text)) << text;
  }
}

}  // namespace
}  // namespace wsgate::config
