#include "server/admin.h"

#include <iterator>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
constexpr auto kRequestTimeout = std::chrono::seconds(30);

http::response<http::string_body> textResponse(http::status status, std::string body,
                                               std::string_view type = "text/plain") {
  http::response<http::string_body> response(status, 11);
  response.set(http::field::server, "wsgate");
  response.set(http::field::content_type, type);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

}  // namespace

Admin::Admin(std::vector<std::shared_ptr<prometheus::Collectable>> collectables)
    : collectables_(std::move(collectables)) {}

Admin::~Admin() { stop(); }

tcp::endpoint Admin::bind(const tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  return acceptor_.local_endpoint();
}

void Admin::start() {
  accept();
  thread_ = std::thread([this] { io_.run(); });
}

void Admin::stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    io_.stop();
  });
  thread_.join();
}

void Admin::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Typically out of descriptors: retry later instead of spinning.
      spdlog::warn("admin accept failed: {}; retrying in 100ms", ec.message());
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](const boost::system::error_code& wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    accept();
  });
}

asio::awaitable<void> Admin::serve(tcp::socket socket) {
  boost::beast::flat_buffer buffer(64 * 1024);
  for (;;) {
    http::request<http::empty_body> request;
    asio::steady_timer timer(io_, kRequestTimeout);
    auto read = co_await (http::async_read(socket, buffer, request, kToken) ||
                          timer.async_wait(kToken));
    if (read.index() != 0 || std::get<0>(std::get<0>(read))) co_return;
    http::response<http::string_body> response;
    const std::string_view target = request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/reload") {
      if (request.method() != http::verb::post) {
        response = textResponse(http::status::method_not_allowed, "use POST\n");
        response.set(http::field::allow, "POST");
      } else if (!on_reload_) {
        response = textResponse(http::status::not_found, "no reload here\n");
      } else {
        auto [ok, text] = on_reload_();
        response = textResponse(ok ? http::status::ok : http::status::bad_request, text);
      }
    } else if (path == "/drain") {
      if (request.method() != http::verb::post) {
        response = textResponse(http::status::method_not_allowed, "use POST\n");
        response.set(http::field::allow, "POST");
      } else {
        const bool started = on_drain_ && on_drain_();
        response = textResponse(http::status::ok, started ? "draining\n" : "already draining\n");
      }
    } else if (request.method() != http::verb::get && request.method() != http::verb::head) {
      response = textResponse(http::status::method_not_allowed, "use GET\n");
    } else if (path == "/metrics") {
      std::vector<prometheus::MetricFamily> families;
      for (const auto& collectable : collectables_) {
        auto more = collectable->Collect();
        families.insert(families.end(), std::make_move_iterator(more.begin()),
                        std::make_move_iterator(more.end()));
      }
      prometheus::TextSerializer serializer;
      response = textResponse(http::status::ok, serializer.Serialize(families),
                              "text/plain; version=0.0.4; charset=utf-8");
    } else if (path == "/config" && on_config_) {
      response = textResponse(http::status::ok, on_config_(), "application/json");
    } else if (path == "/healthz") {
      response = textResponse(http::status::ok, "ok\n");
    } else if (path == "/ready") {
      response = ready_.load() ? textResponse(http::status::ok, "ready\n")
                               : textResponse(http::status::service_unavailable,
                                              "not ready\n");
    } else {
      response = textResponse(http::status::not_found,
                              "not found; try /metrics, /healthz, /ready, /config, POST /reload or "
                              "POST /drain\n");
    }
    response.keep_alive(request.keep_alive());
    auto [write_ec, n] = co_await http::async_write(socket, response, kToken);
    if (write_ec || !request.keep_alive()) co_return;
  }
}

}  // namespace wsgate::gateway
