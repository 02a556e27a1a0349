// The whole gateway process: N workers (each with its own io_context, listening sockets and
// sessions) and the admin listener. start() binds everything or fails with a logged reason;
// run() blocks until SIGINT/SIGTERM, drains (the listeners close, /ready answers 503, live
// sessions get 1001 spread over the drain, until none is left or drain.timeout), then stops
// the workers. A second signal stops at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "config/config.h"
#include "config/loader.h"
#include "io/tls_context.h"
#include "server/admin.h"
#include "server/config_status.h"
#include "server/worker.h"

namespace wsgate::gateway {

class Server {
 public:
  // Loads the config file again, for a reload.
  using ConfigLoader = std::function<config::LoadResult()>;
  struct ReloadOutcome {
    bool ok = false;
    std::string message;  // the errors, or "reloaded" and what could not change live
  };

  Server(std::shared_ptr<const config::Config> config, ConfigLoader loader = {});
  ~Server();

  // Binds every listener on every worker and the admin address; false (logged) on failure.
  bool start();
  // Blocks until a stop signal; returns the process exit code.
  int run();
  // SIGHUP and POST /reload (any thread, one at a time): a valid file is published to every
  // worker for new connections; live sessions keep the config they started with. An invalid one
  // changes nothing.
  ReloadOutcome reload();

 private:
  std::shared_ptr<const config::Config> currentConfig() const;
  std::atomic<uint32_t>& openCounter(const std::string& listener);
  // Starts a drain (any thread); false if one was under way.
  bool startDrain();
  size_t liveSessions() const;

  ConfigLoader loader_;
  mutable std::mutex config_mutex_;  // config_ and tls_, which a reload replaces
  std::mutex reload_mutex_;          // one reload at a time
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const TlsContexts> tls_;
  std::shared_ptr<ConfigStatus> status_ = std::make_shared<ConfigStatus>();
  // Installed before anything is announced, so an early SIGTERM is a clean stop.
  boost::asio::io_context signals_io_{1};
  boost::asio::signal_set signals_{signals_io_, SIGINT, SIGTERM};
  boost::asio::signal_set hangups_{signals_io_, SIGHUP};
  // Open connections per listener name, for max_connections: shared by every worker, so
  // declared before them and destroyed after the connections that count themselves here. Never
  // erased (a listener a reload removed may still have connections), one per name ever used.
  std::map<std::string, std::unique_ptr<std::atomic<uint32_t>>> open_connections_;
  // The address each current listener is bound to, by name: a reload keeps those whose
  // address did not change and binds the others.
  std::map<std::string, std::string> bound_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Admin> admin_;
  std::shared_ptr<std::atomic<bool>> draining_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace wsgate::gateway
