#include "upstream/echo_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

namespace wsgate::gateway {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using LocalSocket = asio::local::stream_protocol::socket;

namespace {

asio::awaitable<void> serveEcho(LocalSocket socket) {
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  websocket::stream<LocalSocket> ws(std::move(socket));
  ws.read_message_max(EchoUpstream::kMaxMessage);
  ws.auto_fragment(false);
  ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(boost::beast::http::field::server, "wsgate-echo");
  }));
  auto [accept_ec] = co_await ws.async_accept(token);
  if (accept_ec) co_return;
  boost::beast::flat_buffer buffer;
  for (;;) {
    auto [read_ec, n] = co_await ws.async_read(buffer, token);
    if (read_ec) co_return;  // closed (Beast answered the close frame) or the pair was torn down
    ws.text(ws.got_text());
    auto [write_ec, written] = co_await ws.async_write(buffer.data(), token);
    if (write_ec) co_return;
    buffer.consume(buffer.size());
    buffer.shrink_to_fit();  // an idle echo session holds no buffer either
  }
}

}  // namespace

asio::awaitable<UpstreamConnection> EchoUpstream::connect(std::string_view /*first_bytes*/) {
  UpstreamConnection result;
  result.endpoint = "echo";
  LocalSocket gateway_end(worker_.io);
  LocalSocket echo_end(worker_.io);
  boost::system::error_code ec;
  asio::local::connect_pair(gateway_end, echo_end, ec);
  if (ec) {
    if (auto admitted = connect_failures_log_.admit()) {
      spdlog::warn("cluster {}: cannot open the in-process echo: socketpair: {}{}", cluster_,
                   ec.message(), admitted->suffix());
    }
    co_return result;
  }
  asio::co_spawn(worker_.io, serveEcho(std::move(echo_end)), asio::detached);
  result.stream.emplace(Socket(std::move(gateway_end)));
  co_return result;
}

}  // namespace wsgate::gateway
