#include "stats/stats.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace wsgate::gateway {
namespace {

TEST(WorkerStatsTest, SameMetricAndLabelsGiveTheSameCell) {
  WorkerStats stats;
  Cell& a = stats.cell(Metric::kCloseCodes, {"chat", "client", "1000"});
  Cell& b = stats.cell(Metric::kCloseCodes, {std::string("chat"), "client", "1000"});
  EXPECT_EQ(&a, &b);
  a.add(2);
  b.add(3);
  EXPECT_EQ(a.value(), 5);
}

TEST(WorkerStatsTest, AnyDifferenceGivesAnotherCell) {
  WorkerStats stats;
  Cell* base = &stats.cell(Metric::kCloseCodes, {"chat", "client", "1000"});
  const std::vector<Cell*> others = {
      &stats.cell(Metric::kCloseCodes, {"chat", "client", "1001"}),
      &stats.cell(Metric::kCloseCodes, {"chat", "upstream", "1000"}),
      &stats.cell(Metric::kCloseCodes, {"chat", "client"}),
      &stats.cell(Metric::kCloseCodes, {"chat", "client", "1000", "x"}),
      &stats.cell(Metric::kFilterRejections, {"chat", "client", "1000"}),
      &stats.cell(Metric::kCloseCodes, {"chas", "client", "1000"}),
  };
  for (Cell* other : others) EXPECT_NE(other, base);
  EXPECT_EQ(&stats.cell(Metric::kCloseCodes, {"chat", "client", "1000"}), base);
}

TEST(WorkerStatsTest, ForEachSeesEveryCellWithItsLabels) {
  WorkerStats stats;
  stats.cell(Metric::kConnectionsTotal, {"public", "relayed"}).add(4);
  stats.cell(Metric::kConnectionsTotal, {"public", "rejected"}).add(1);
  stats.cell(Metric::kRelayBufferBytes, {}).add(65536);
  std::map<std::vector<std::string>, int64_t> seen;
  stats.forEach([&](const WorkerStats::Key& key, int64_t value) { seen[key.second] = value; });
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ((seen[{"public", "relayed"}]), 4);
  EXPECT_EQ((seen[{"public", "rejected"}]), 1);
  EXPECT_EQ(seen[{}], 65536);
}

TEST(WorkerStatsTest, RouteCellsAreTheCellsOfEachDirection) {
  WorkerStats stats;
  const auto& cells = stats.routeCells("chat");
  EXPECT_EQ(cells[0].frames, &stats.cell(Metric::kFrames, {"chat", "client_to_upstream"}));
  EXPECT_EQ(cells[1].bytes, &stats.cell(Metric::kBytes, {"chat", "upstream_to_client"}));
  EXPECT_EQ(&stats.routeCells("chat"), &cells);
}

}  // namespace
}  // namespace wsgate::gateway
