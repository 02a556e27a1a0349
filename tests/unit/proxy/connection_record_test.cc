#include "proxy/connection_record.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>

namespace wsgate::gateway {
namespace {

TEST(ListenerSlot, TakesPlacesUpToTheCapAndGivesThemBack) {
  std::atomic<uint32_t> open{0};
  {
    ListenerSlot a = ListenerSlot::take(open, 2);
    ListenerSlot b = ListenerSlot::take(open, 2);
    EXPECT_TRUE(a);
    EXPECT_TRUE(b);
    ListenerSlot refused = ListenerSlot::take(open, 2);
    EXPECT_FALSE(refused);
    EXPECT_EQ(open.load(), 2u);  // a refusal leaves no trace
  }
  EXPECT_EQ(open.load(), 0u);
}

TEST(ListenerSlot, IsHeldByTheConnectionRecordWhereverItMoves) {
  std::atomic<uint32_t> open{0};
  WorkerStats stats;
  std::optional<ConnectionRecord> moved;
  {
    ConnectionRecord record(stats, "public", ListenerSlot::take(open, 1));
    EXPECT_EQ(open.load(), 1u);
    moved.emplace(std::move(record));  // as into a session
  }
  EXPECT_EQ(open.load(), 1u);
  EXPECT_FALSE(ListenerSlot::take(open, 1));
  moved.reset();
  EXPECT_EQ(open.load(), 0u);
  EXPECT_TRUE(ListenerSlot::take(open, 1));
}

}  // namespace
}  // namespace wsgate::gateway
