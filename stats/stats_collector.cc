#include "stats/stats_collector.h"

#include <map>

namespace wsgate::gateway {

std::vector<prometheus::MetricFamily> StatsCollector::Collect() const {
  std::map<WorkerStats::Key, int64_t> sums;
  for (const WorkerStats* worker : workers_) {
    worker->forEach([&](const WorkerStats::Key& key, int64_t value) { sums[key] += value; });
  }
  std::vector<prometheus::MetricFamily> families(static_cast<size_t>(Metric::kCount));
  for (size_t i = 0; i < families.size(); ++i) {
    const MetricInfo& info = metricInfo(static_cast<Metric>(i));
    families[i].name = std::string(info.name);
    families[i].help = std::string(info.help);
    families[i].type = info.gauge ? prometheus::MetricType::Gauge : prometheus::MetricType::Counter;
  }
  for (const auto& [key, value] : sums) {
    const MetricInfo& info = metricInfo(key.first);
    prometheus::ClientMetric metric;
    for (size_t l = 0; l < info.labels.size() && l < key.second.size(); ++l) {
      metric.label.push_back({std::string(info.labels[l]), key.second[l]});
    }
    if (info.gauge) {
      metric.gauge.value = static_cast<double>(value) * info.scale;
    } else {
      metric.counter.value = static_cast<double>(value) * info.scale;
    }
    families[static_cast<size_t>(key.first)].metric.push_back(std::move(metric));
  }
  return families;
}

}  // namespace wsgate::gateway
