// Presents the workers' metric cells to prometheus-cpp: at scrape time it sums every worker's
// cells by metric and labels. Called from the admin thread; workers never wait for it.
#pragma once

#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "stats/stats.h"

namespace wsgate::gateway {

class StatsCollector final : public prometheus::Collectable {
 public:
  explicit StatsCollector(std::vector<const WorkerStats*> workers)
      : workers_(std::move(workers)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::vector<const WorkerStats*> workers_;
};

}  // namespace wsgate::gateway
