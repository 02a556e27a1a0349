#include "io/relay_buffers.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace wsgate::gateway {
namespace {

// A holder that reports what the test tells it and counts the sweeps it saw.
class FakeHolder : public RelayBuffers::Holder {
 public:
  bool returnIdleBuffers() override {
    ++sweeps;
    return still_holding;
  }
  bool still_holding = true;
  int sweeps = 0;
};

int64_t lentBytes(WorkerStats& stats) { return stats.cell(Metric::kRelayBufferBytes, {}).value(); }

TEST(RelayBuffersTest, LendsUpToTheBoundThenRefuses) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 2, 1);
  FakeHolder holder;
  auto a = buffers.lend(holder);
  auto b = buffers.lend(holder);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(buffers.lent(), 2u);
  EXPECT_EQ(lentBytes(stats), 2 * static_cast<int64_t>(RelayBuffers::kBufferSize));
  EXPECT_EQ(buffers.lend(holder), nullptr);
  buffers.giveBack(std::move(a));
  EXPECT_EQ(buffers.lent(), 1u);
  EXPECT_NE(buffers.lend(holder), nullptr) << "a returned buffer can be lent again";
}

TEST(RelayBuffersTest, ReusesReturnedBuffersAndCachesAtMostTheBound) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 8, 2);
  FakeHolder holder;
  std::vector<std::unique_ptr<uint8_t[]>> out;
  for (int i = 0; i < 4; ++i) out.push_back(buffers.lend(holder));
  const uint8_t* first = out[0].get();
  for (auto& buffer : out) buffers.giveBack(std::move(buffer));
  EXPECT_EQ(buffers.lent(), 0u);
  EXPECT_EQ(buffers.cached(), 2u) << "free buffers beyond the cache bound are freed";
  EXPECT_EQ(lentBytes(stats), 0);
  auto again = buffers.lend(holder);
  EXPECT_NE(again.get(), first) << "the most recently returned buffer is reused first";
  EXPECT_EQ(buffers.cached(), 1u);
  buffers.giveBack(std::move(again));
}

TEST(RelayBuffersTest, GivingBackNothingIsHarmless) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 1, 1);
  buffers.giveBack(nullptr);
  EXPECT_EQ(buffers.lent(), 0u);
}

TEST(RelayBuffersTest, SweepAsksEveryHolderOnceAndDropsThoseThatHoldNothing) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 8, 8);
  FakeHolder busy;
  FakeHolder quiet;
  quiet.still_holding = false;
  auto a = buffers.lend(busy);
  auto b = buffers.lend(busy);  // a second loan does not register the holder twice
  auto c = buffers.lend(quiet);
  buffers.sweep();
  EXPECT_EQ(busy.sweeps, 1);
  EXPECT_EQ(quiet.sweeps, 1);
  buffers.sweep();
  EXPECT_EQ(busy.sweeps, 2);
  EXPECT_EQ(quiet.sweeps, 1) << "a holder that holds nothing is not swept again";
  buffers.giveBack(std::move(a));
  buffers.giveBack(std::move(b));
  buffers.giveBack(std::move(c));
}

TEST(RelayBuffersTest, ADestroyedHolderLeavesTheSweepList) {
  WorkerStats stats;
  RelayBuffers buffers(stats, 8, 8);
  std::unique_ptr<uint8_t[]> kept;
  {
    FakeHolder gone;
    kept = buffers.lend(gone);
  }
  buffers.sweep();  // must not touch the destroyed holder (ASan would report it)
  buffers.giveBack(std::move(kept));
  EXPECT_EQ(buffers.lent(), 0u);
}

}  // namespace
}  // namespace wsgate::gateway
