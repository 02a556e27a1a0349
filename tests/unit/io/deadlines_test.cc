#include "io/deadlines.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "io/deadline.h"

namespace wsgate::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Records the order entries fire in, and when.
struct Probe {
  std::vector<int>* fired;
  int id;
  Clock::time_point at{};
  static void fire(void* context) {
    auto* probe = static_cast<Probe*>(context);
    probe->at = Clock::now();
    probe->fired->push_back(probe->id);
  }
};

class DeadlinesTest : public ::testing::Test {
 protected:
  ~DeadlinesTest() override { deadlines_.close(); }
  // Runs the loop until `done` or 2 s have passed.
  template <typename Done>
  void runUntil(Done done) {
    const auto until = Clock::now() + 2s;
    while (!done() && Clock::now() < until) {
      io_.restart();
      io_.run_for(5ms);
    }
  }

  boost::asio::io_context io_;
  Deadlines deadlines_{io_};
  std::vector<int> fired_;
};

// The reason the worker keeps its deadlines here: a handshake or a session that ends in time
// arms and disarms without any handler going through the loop (a cancelled Asio timer posts
// one per wait).
TEST_F(DeadlinesTest, ArmingAndDisarmingRunsNoHandler) {
  std::vector<std::unique_ptr<Probe>> probes;
  std::vector<std::unique_ptr<Deadlines::Entry>> entries;
  for (int i = 0; i < 1000; ++i) {
    probes.push_back(std::make_unique<Probe>(Probe{&fired_, i}));
    entries.push_back(std::make_unique<Deadlines::Entry>(&Probe::fire, probes.back().get()));
    deadlines_.arm(*entries.back(), 10s);
  }
  EXPECT_EQ(deadlines_.armedCount(), 1000u);
  for (auto& entry : entries) deadlines_.disarm(*entry);
  EXPECT_EQ(deadlines_.armedCount(), 0u);
  EXPECT_EQ(io_.poll(), 0u);  // one timer wait is pending; nothing completed
  EXPECT_TRUE(fired_.empty());
}

TEST_F(DeadlinesTest, FiresDueEntriesInOrderAndSkipsDisarmedOnes) {
  Probe a{&fired_, 1}, b{&fired_, 2}, c{&fired_, 3};
  Deadlines::Entry ea(&Probe::fire, &a), eb(&Probe::fire, &b), ec(&Probe::fire, &c);
  const auto start = Clock::now();
  deadlines_.arm(ea, 60ms);
  deadlines_.arm(eb, 60ms);
  deadlines_.arm(ec, 60ms);
  deadlines_.disarm(eb);
  runUntil([&] { return fired_.size() == 2; });
  EXPECT_EQ(fired_, (std::vector<int>{1, 3}));
  EXPECT_GE(a.at - start, 60ms);
  EXPECT_LT(a.at - start, 500ms);
  EXPECT_FALSE(ea.armed());
  EXPECT_EQ(deadlines_.armedCount(), 0u);
}

TEST_F(DeadlinesTest, AShorterDurationArmedLaterFiresFirst) {
  Probe slow{&fired_, 1}, quick{&fired_, 2};
  Deadlines::Entry es(&Probe::fire, &slow), eq(&Probe::fire, &quick);
  const auto start = Clock::now();
  deadlines_.arm(es, 400ms);
  deadlines_.arm(eq, 50ms);
  runUntil([&] { return !fired_.empty(); });
  ASSERT_EQ(fired_, (std::vector<int>{2}));
  EXPECT_LT(quick.at - start, 300ms);
  runUntil([&] { return fired_.size() == 2; });
  EXPECT_EQ(fired_, (std::vector<int>{2, 1}));
}

TEST_F(DeadlinesTest, ReArmingMovesTheEntryAndDestroyingItDisarms) {
  Probe a{&fired_, 1}, b{&fired_, 2};
  Deadlines::Entry ea(&Probe::fire, &a);
  deadlines_.arm(ea, 40ms);
  deadlines_.arm(ea, 120ms);  // moved: fires once, later
  {
    Deadlines::Entry eb(&Probe::fire, &b);
    deadlines_.arm(eb, 40ms);
  }  // gone before it fell due
  EXPECT_EQ(deadlines_.armedCount(), 1u);
  const auto start = Clock::now();
  runUntil([&] { return !fired_.empty(); });
  EXPECT_EQ(fired_, (std::vector<int>{1}));
  EXPECT_GE(a.at - start, 100ms);
}

// An action may destroy its own entry (a session that ends on its close timeout) and arm others.
TEST_F(DeadlinesTest, AnActionMayDestroyItsEntryAndArmAnother) {
  struct Owner {
    Deadlines* deadlines;
    std::unique_ptr<Deadlines::Entry> self;
    Deadlines::Entry* next;
    bool done = false;
  } owner{&deadlines_, nullptr, nullptr};
  Probe later{&fired_, 7};
  Deadlines::Entry next(&Probe::fire, &later);
  owner.next = &next;
  owner.self = std::make_unique<Deadlines::Entry>(
      [](void* context) {
        auto* o = static_cast<Owner*>(context);
        o->self.reset();
        o->deadlines->arm(*o->next, 20ms);
        o->done = true;
      },
      &owner);
  deadlines_.arm(*owner.self, 20ms);
  runUntil([&] { return fired_.size() == 1; });
  EXPECT_TRUE(owner.done);
  EXPECT_EQ(fired_, (std::vector<int>{7}));
}

TEST_F(DeadlinesTest, NothingFiresOnceClosed) {
  Probe a{&fired_, 1};
  Deadlines::Entry ea(&Probe::fire, &a);
  deadlines_.arm(ea, 20ms);
  deadlines_.close();
  io_.run_for(100ms);
  EXPECT_TRUE(fired_.empty());
  deadlines_.disarm(ea);
  EXPECT_EQ(deadlines_.armedCount(), 0u);
}

TEST_F(DeadlinesTest, DeadlineRunsItsActionOnceAndSaysItExpired) {
  Deadline deadline(deadlines_);
  int runs = 0;
  deadline.arm(30ms, [&] { ++runs; });
  EXPECT_TRUE(deadline.armed());
  runUntil([&] { return runs > 0; });
  io_.run_for(60ms);
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(deadline.expired());
  EXPECT_FALSE(deadline.armed());

  deadline.arm(30ms, [&] { runs += 10; });
  deadline.retarget([&] { runs += 100; });  // same due time, new action
  runUntil([&] { return runs > 1; });
  EXPECT_EQ(runs, 101);

  deadline.arm(30ms, [&] { runs += 1000; });
  deadline.disarm();
  io_.run_for(80ms);
  EXPECT_EQ(runs, 101);
  EXPECT_FALSE(deadline.expired());
}

}  // namespace
}  // namespace wsgate::gateway
