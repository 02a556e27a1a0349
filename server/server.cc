#include "server/server.h"

#include <unistd.h>

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

// A listening socket for each worker on `endpoint` (the first fixes a port 0), as descriptors
// the workers adopt; closed again if any fails. Throws boost::system::system_error.
std::vector<int> bindForWorkers(size_t workers, tcp::endpoint& endpoint) {
  asio::io_context io;
  std::vector<int> fds;
  try {
    for (size_t i = 0; i < workers; ++i) {
      tcp::acceptor acceptor = openAcceptor(io, endpoint);
      endpoint = acceptor.local_endpoint();
      fds.push_back(acceptor.release());
    }
  } catch (...) {
    for (int fd : fds) ::close(fd);
    throw;
  }
  return fds;
}

}  // namespace

std::atomic<uint32_t>& Server::openCounter(const std::string& listener) {
  auto& counter = open_connections_[listener];
  if (!counter) counter = std::make_unique<std::atomic<uint32_t>>(0);
  return *counter;
}

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
  // Listeners: one whose name and address are unchanged keeps its sockets (and its place in
  // the kernel's accept queue); an added or moved one is bound here, before anything changes,
  // so that a port in use fails the whole reload.
  std::vector<std::vector<Worker::ListenerPlan>> plans(workers_.size());
  std::vector<std::string> announced;
  auto closeAll = [&] {
    for (auto& plan : plans) {
      for (auto& entry : plan) {
        if (entry.fd >= 0) ::close(entry.fd);
      }
    }
  };
  for (const config::Listener& listener : now.listeners) {
    auto bound = bound_.find(listener.name);
    const bool keep = bound != bound_.end() && bound->second == listener.address.text();
    std::vector<int> fds(workers_.size(), -1);
    tcp::endpoint endpoint = endpointOf(listener.address);
    if (!keep) {
      try {
        fds = bindForWorkers(workers_.size(), endpoint);
      } catch (const boost::system::system_error& e) {
        closeAll();
        return fail(fmt::format("listener {}: cannot listen on {}: {}; configuration not "
                                "reloaded, the old one serves\n",
                                listener.name, listener.address.text(), e.code().message()));
      }
      announced.push_back(fmt::format("listener {} listening on {}", listener.name,
                                      textOf(endpoint)));
    }
    for (size_t w = 0; w < workers_.size(); ++w) {
      plans[w].push_back({listener.name, fds[w], endpoint.address().is_v6(),
                          &openCounter(listener.name)});
    }
  }
  for (size_t w = 0; w < workers_.size(); ++w) {
    workers_[w]->swapConfig(loaded.config, tls, std::move(plans[w]));
  }
  std::map<std::string, std::string> bound;
  for (const config::Listener& listener : now.listeners) {
    bound[listener.name] = listener.address.text();
  }
  for (const auto& [name, address] : bound_) {
    if (!bound.count(name)) {
      spdlog::info("listener {} on {} removed: it stops accepting", name, address);
    }
  }
  bound_ = std::move(bound);
  for (const auto& line : announced) spdlog::info("{}", line);
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
        worker->addListener(l, std::move(acceptor), openCounter(listener.name));
      }
    } catch (const boost::system::system_error& e) {
      spdlog::error("listener {}: cannot listen on {}: {}", listener.name,
                    listener.address.text(), e.code().message());
      return false;
    }
    spdlog::info("listener {} listening on {}", listener.name, textOf(endpoint));
    bound_[listener.name] = listener.address.text();
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
