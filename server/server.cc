#include "server/server.h"

#include <boost/asio/signal_set.hpp>
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

std::string textOf(const tcp::endpoint& endpoint) {
  const auto ip = endpoint.address();
  if (ip.is_v6()) return fmt::format("[{}]:{}", ip.to_string(), endpoint.port());
  return fmt::format("{}:{}", ip.to_string(), endpoint.port());
}

}  // namespace

Server::Server(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}

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
      std::make_shared<StatsCollector>(std::move(stats)), std::make_shared<LogCollector>()});
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

int Server::run() {
  signals_.async_wait([](const boost::system::error_code& ec, int signal) {
    if (!ec) spdlog::info("received signal {}, stopping", signal);
  });
  signals_io_.run();
  admin_->setReady(false);
  admin_->stop();
  for (auto& worker : workers_) worker->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace wsgate::gateway
