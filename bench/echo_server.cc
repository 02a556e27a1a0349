// The echo backend behind every proxy in the benchmark: one thread, Beast WebSocket server,
// echoes each message as it came (text or binary). Binds 127.0.0.1 only.
#include <iostream>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> serve(tcp::socket socket) {
  socket.set_option(tcp::no_delay(true));
  websocket::stream<tcp::socket> ws(std::move(socket));
  ws.read_message_max(64 * 1024 * 1024);
  ws.auto_fragment(false);
  if (auto [ec] = co_await ws.async_accept(kToken); ec) co_return;
  beast::flat_buffer buffer;
  for (;;) {
    auto [read_ec, n] = co_await ws.async_read(buffer, kToken);
    if (read_ec) co_return;
    ws.text(ws.got_text());
    auto [write_ec, written] = co_await ws.async_write(buffer.data(), kToken);
    if (write_ec) co_return;
    buffer.consume(buffer.size());
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kToken);
    if (ec) {
      asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(kToken);
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsgate-bench-echo: WebSocket echo backend for the benchmark"};
  uint16_t port = 0;
  app.add_option("--port", port, "port on 127.0.0.1 (0: any)");
  CLI11_PARSE(app, argc, argv);
  asio::io_context io(1);
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
  acceptor.listen(4096);
  std::cout << "listening on 127.0.0.1:" << acceptor.local_endpoint().port() << std::endl;
  asio::co_spawn(io, listen(acceptor), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, auto) { io.stop(); });
  io.run();
}
