// The admin listener (default 127.0.0.1:9901), on its own thread so that scrapes never run on
// a worker: GET /metrics (Prometheus text format), /healthz (the process is alive), /ready
// (accepting traffic), GET /config (the active configuration as JSON, secrets redacted),
// POST /reload (load the file again) and POST /drain (stop accepting and let sessions go,
// without exiting: a preStop hook). Plain HTTP/1.1 with keep-alive; each request is bounded in size and time.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <prometheus/collectable.h>

namespace wsgate::gateway {

class Admin {
 public:
  // /metrics serves the families of every collectable, in order.
  explicit Admin(std::vector<std::shared_ptr<prometheus::Collectable>> collectables);
  ~Admin();

  // Binds; throws boost::system::system_error on failure. Returns the bound endpoint.
  boost::asio::ip::tcp::endpoint bind(const boost::asio::ip::tcp::endpoint& endpoint);
  void start();
  void stop();
  void setReady(bool ready) { ready_.store(ready); }
  // POST /drain calls this on the admin thread; it returns false if a drain was under way.
  // Set before start().
  void onDrain(std::function<bool()> start_drain) { on_drain_ = std::move(start_drain); }
  // POST /reload: (ok, text) → 200 or 400 with the text. GET /config: the JSON to answer.
  void onReload(std::function<std::pair<bool, std::string>()> reload) {
    on_reload_ = std::move(reload);
  }
  void onConfig(std::function<std::string()> config) { on_config_ = std::move(config); }

 private:
  void accept();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  boost::asio::io_context io_{1};
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::atomic<bool> ready_{false};
  std::function<bool()> on_drain_;
  std::function<std::pair<bool, std::string>()> on_reload_;
  std::function<std::string()> on_config_;
  std::thread thread_;
};

}  // namespace wsgate::gateway
