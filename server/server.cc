#include "server/server.h"

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>

#include "server/logging.h"
#include "stats/stats_collector.h"

namespace wsgate::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

tcp::endpoint endpointOf(const config::Address& address) {
  return {asio::ip::make_address(address.ip), address.port};
}

// wsgate_draining: 1 from the start of a drain.
class DrainCollector final : public prometheus::Collectable {
 public:
  explicit DrainCollector(std::shared_ptr<const std::atomic<bool>> draining)
      : draining_(std::move(draining)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family;
    family.name = "wsgate_draining";
    family.help = "1 while the gateway drains (SIGTERM, SIGINT or POST /drain), else 0.";
    family.type = prometheus::MetricType::Gauge;
    prometheus::ClientMetric metric;
    metric.gauge.value = draining_->load() ? 1 : 0;
    family.metric.push_back(std::move(metric));
    return {std::move(family)};
  }

 private:
  std::shared_ptr<const std::atomic<bool>> draining_;
};

std::string textOf(const tcp::endpoint& endpoint) {
  const auto ip = endpoint.address();
  if (ip.is_v6()) return fmt::format("[{}]:{}", ip.to_string(), endpoint.port());
  return fmt::format("{}:{}", ip.to_string(), endpoint.port());
}

}  // namespace

namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What a reload cannot change live yet: the listeners themselves (their names, addresses and
// whether they speak TLS). Empty when nothing of that changed.
std::string listenerChanges(const config::Config& old, const config::Config& now) {
  if (old.listeners.size() != now.listeners.size()) {
    return fmt::format("the number of listeners changed ({} → {})", old.listeners.size(),
                       now.listeners.size());
  }
  for (size_t i = 0; i < old.listeners.size(); ++i) {
    const auto& a = old.listeners[i];
    const auto& b = now.listeners[i];
    if (a.name != b.name) return fmt::format("listeners[{}] is now {}, was {}", i, b.name, a.name);
    if (a.address.text() != b.address.text()) {
      return fmt::format("listener {} moved ({} → {})", a.name, a.address.text(),
                         b.address.text());
    }
    if (a.tls.has_value() != b.tls.has_value()) {
      return fmt::format("listener {} {} TLS", a.name, b.tls ? "gained" : "lost");
    }
  }
  return {};
}

}  // namespace

Server::Server(std::shared_ptr<const config::Config> config, ConfigLoader loader)
    : loader_(std::move(loader)), config_(std::move(config)) {}

std::shared_ptr<const config::Config> Server::currentConfig() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

Server::ReloadOutcome Server::reload() {
  std::lock_guard one_at_a_time(reload_mutex_);
  const auto old = currentConfig();
  auto fail = [&](const std::string& errors) {
    for (size_t start = 0; start < errors.size();) {
      const size_t end = errors.find('\n', start);
      spdlog::error("reload: {}", errors.substr(start, end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    status_->reloadFailed(errors);
    return ReloadOutcome{false, errors};
  };
  if (!loader_) return fail("no configuration file to reload from\n");
  config::LoadResult loaded = loader_();
  if (!loaded.config) {
    return fail(loaded.diagnostics.format() +
                fmt::format("{}: {} error(s); configuration not reloaded, the old one serves\n",
                            old->source, loaded.diagnostics.errors().size()));
  }
  const config::Config& now = *loaded.config;
  if (const std::string changed = listenerChanges(*old, now); !changed.empty()) {
    return fail(fmt::format("{}: {}: listeners cannot change on a reload yet (a restart applies "
                            "it); configuration not reloaded, the old one serves\n",
                            old->source, changed));
  }
  std::shared_ptr<const TlsContexts> tls;
  try {
    tls = TlsContexts::build(now);
  } catch (const std::exception& e) {
    return fail(std::string(e.what()) + "\nconfiguration not reloaded, the old one serves\n");
  }
  std::string kept;
  if (now.workers != old->workers) {
    kept += fmt::format("workers: {} → {} needs a restart; {} workers keep running\n",
                        old->workers, now.workers, old->workers);
  }
  if (now.admin.address.text() != old->admin.address.text()) {
    kept += fmt::format("admin.address: {} → {} needs a restart; the admin listener stays\n",
                        old->admin.address.text(), now.admin.address.text());
  }
  for (auto& worker : workers_) worker->swapConfig(loaded.config, tls);
  {
    std::lock_guard lock(config_mutex_);
    config_ = loaded.config;
    tls_ = tls;
  }
  status_->loaded(now.source, readText(now.source), true);
  spdlog::info("configuration reloaded from {} (hash {})", now.source, status_->hash());
  if (!kept.empty()) spdlog::warn("reload: {}", kept.substr(0, kept.size() - 1));
  for (const auto& warning : loaded.diagnostics.warnings()) {
    spdlog::warn("reload: {}", warning.format());
  }
  return {true, "reloaded\n" + kept};
}

Server::~Server() {
  if (admin_) admin_->stop();
  for (auto& worker : workers_) worker->stop();
}

bool Server::start() {
  try {
    tls_ = TlsContexts::build(*config_);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  open_connections_ = std::make_unique<std::atomic<uint32_t>[]>(config_->listeners.size());
  for (unsigned i = 0; i < config_->workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_, tls_));
  }
  for (size_t l = 0; l < config_->listeners.size(); ++l) {
    const config::Listener& listener = config_->listeners[l];
    tcp::endpoint endpoint = endpointOf(listener.address);
    try {
      // The first bind fixes the port (port 0 picks one); the other workers share it.
      for (auto& worker : workers_) {
        tcp::acceptor acceptor = openAcceptor(worker->io(), endpoint);
        endpoint = acceptor.local_endpoint();
        worker->addListener(l, std::move(acceptor), open_connections_[l]);
      }
    } catch (const boost::system::system_error& e) {
      spdlog::error("listener {}: cannot listen on {}: {}", listener.name,
                    listener.address.text(), e.code().message());
      return false;
    }
    spdlog::info("listener {} listening on {}", listener.name, textOf(endpoint));
  }
  std::vector<const WorkerStats*> stats;
  for (auto& worker : workers_) stats.push_back(&worker->stats());
  admin_ = std::make_unique<Admin>(std::vector<std::shared_ptr<prometheus::Collectable>>{
      std::make_shared<StatsCollector>(std::move(stats)), std::make_shared<LogCollector>(),
      std::make_shared<DrainCollector>(draining_), status_});
  admin_->onDrain([this] { return startDrain(); });
  admin_->onReload([this] {
    const ReloadOutcome outcome = reload();
    return std::pair{outcome.ok, outcome.message};
  });
  admin_->onConfig([this] { return status_->json(); });
  status_->loaded(config_->source, readText(config_->source), false);
  try {
    const tcp::endpoint bound = admin_->bind(endpointOf(config_->admin.address));
    spdlog::info("admin listening on {}", textOf(bound));
  } catch (const boost::system::system_error& e) {
    spdlog::error("admin: cannot listen on {}: {}", config_->admin.address.text(),
                  e.code().message());
    return false;
  }
  for (auto& worker : workers_) worker->start();
  // Ready before the admin serves: a probe already waiting in its backlog must not see 503.
  admin_->setReady(true);
  admin_->start();
  spdlog::info("wsgate {} started with {} worker(s)", WSGATE_VERSION, workers_.size());
  return true;
}

bool Server::startDrain() {
  if (draining_->exchange(true)) return false;
  admin_->setReady(false);
  const auto spread = currentConfig()->drain.timeout * 2 / 3;
  spdlog::info("draining: listeners closed; {} session(s) get 1001 over {} ms", liveSessions(),
               spread.count());
  for (auto& worker : workers_) worker->drain(spread);
  return true;
}

size_t Server::liveSessions() const {
  size_t n = 0;
  for (const auto& worker : workers_) n += worker->liveSessions();
  return n;
}

// First signal: drain until no session is left or drain.timeout has passed (then what is left
// is dropped); a second signal: stop at once.
int Server::run() {
  asio::steady_timer poll(signals_io_);
  std::chrono::steady_clock::time_point deadline{};
  std::function<void()> waitForSignal;
  std::function<void()> watchDrain = [&] {
    if (liveSessions() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (liveSessions() > 0) {
        spdlog::warn("drain timeout: closing {} session(s) still open", liveSessions());
      }
      signals_io_.stop();
      return;
    }
    poll.expires_after(std::chrono::milliseconds(50));
    poll.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) watchDrain();
    });
  };
  waitForSignal = [&] {
    signals_.async_wait([&](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      const auto timeout = currentConfig()->drain.timeout;
      if (deadline != std::chrono::steady_clock::time_point{} || timeout.count() == 0) {
        spdlog::info("received signal {}, stopping", signal);
        signals_io_.stop();
        return;
      }
      spdlog::info("received signal {}, draining (a second signal stops at once)", signal);
      deadline = std::chrono::steady_clock::now() + timeout;
      startDrain();
      watchDrain();
      waitForSignal();
    });
  };
  std::function<void()> waitForHangup = [&] {
    hangups_.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("received SIGHUP, reloading the configuration");
      reload();
      waitForHangup();
    });
  };
  waitForSignal();
  waitForHangup();
  signals_io_.run();
  admin_->setReady(false);
  admin_->stop();
  for (auto& worker : workers_) worker->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace wsgate::gateway
