// wsgate-bench-echo: the echo backend behind every proxy in the benchmark. One thread, Beast
// WebSocket server, permessage-deflate off; sends each message back as it came (text or binary,
// one write per message). Binds 127.0.0.1 unless told otherwise (--address) and prints
// "listening on ADDRESS:PORT".
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace wsgate::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// One accepted connection: read a message, write it back, repeat. The read of the next message
// starts only once the echo is written, so a client that stops reading stalls only itself.
class EchoSession : public std::enable_shared_from_this<EchoSession> {
 public:
  explicit EchoSession(tcp::socket socket) : ws_(std::move(socket)) {}

  void start() {
    ErrorCode ignored;  // a peer already gone fails its first read instead
    ws_.next_layer().set_option(tcp::no_delay(true), ignored);
    ws_.set_option(websocket::permessage_deflate{});
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(beast::http::field::server, "wsgate-bench-echo");
    }));
    ws_.auto_fragment(false);
    ws_.read_message_max(256 * 1024 * 1024);
    ws_.async_accept([self = shared_from_this()](ErrorCode ec) {
      if (!ec) self->read();
    });
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](ErrorCode ec, size_t) {
      if (ec) return;  // closed (Beast answers the close handshake) or lost
      self->ws_.text(self->ws_.got_text());
      self->ws_.async_write(self->buffer_.data(), [self](ErrorCode wec, size_t) {
        if (wec) return;
        self->buffer_.clear();
        self->read();
      });
    });
  }

  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buffer_;
};

class EchoServer {
 public:
  EchoServer(asio::io_context& io, const std::string& address, uint16_t port)
      : acceptor_(io, {asio::ip::make_address(address), port}), retry_(io) {
    acceptor_.listen(asio::socket_base::max_listen_connections);
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  void accept() {
    acceptor_.async_accept([this](ErrorCode ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors or similar: back off briefly instead of spinning.
        retry_.expires_after(std::chrono::milliseconds(50));
        retry_.async_wait([this](ErrorCode tec) {
          if (!tec) accept();
        });
        return;
      }
      std::make_shared<EchoSession>(std::move(socket))->start();
      accept();
    });
  }

  void stop() {
    ErrorCode ignored;
    acceptor_.close(ignored);
    retry_.cancel();
  }

 private:
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
};

}  // namespace
}  // namespace wsgate::bench

int main(int argc, char** argv) {
  CLI::App app{"wsgate-bench-echo: WebSocket echo backend for the benchmark"};
  uint16_t port = 0;
  std::string address = "127.0.0.1";
  app.add_option("-p,--port", port, "port (0: any free port)");
  // bench/veth.sh puts the backend behind a veth pair, in a network namespace of its own.
  app.add_option("--address", address, "IPv4/IPv6 address to listen on")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  boost::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  wsgate::bench::EchoServer server(io, address, port);
  std::cout << "listening on " << address << ":" << server.port() << std::endl;
  server.accept();
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  std::signal(SIGPIPE, SIG_IGN);
  // A benchmark backend must outlive any one bad connection: report and keep serving.
  for (;;) {
    try {
      io.run();
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "wsgate-bench-echo: " << e.what() << std::endl;
    }
  }
}
