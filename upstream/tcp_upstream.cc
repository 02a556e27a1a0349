#include "upstream/tcp_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "io/deadline.h"
#include "io/nonblocking_socket.h"

namespace wsgate::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;

TcpUpstream::TcpUpstream(WorkerContext& worker, const config::Cluster& cluster,
                         const ClientTlsContext* tls)
    : worker_(worker),
      cluster_(cluster),
      // Spread workers over the endpoints from the first connection on.
      next_(worker.index),
      failures_(worker.stats.cell(Metric::kUpstreamConnectFailures, {cluster.name})),
      tls_(tls) {
  for (const auto& address : cluster.endpoints) {
    endpoints_.emplace_back(asio::ip::make_address(address.ip), address.port);
    endpoint_texts_.push_back(address.text());
  }
}

asio::awaitable<UpstreamConnection> TcpUpstream::connect(std::string_view first_bytes) {
  UpstreamConnection result;
  for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
    const size_t index = next_++ % endpoints_.size();
    const tcp::endpoint& endpoint = endpoints_[index];
    result.endpoint = endpoint_texts_[index];
    tcp::socket socket(worker_.io);
    // One deadline for the attempt: the connect, then a TLS cluster's handshake.
    Deadline deadline(worker_.deadlines);
    // Over TLS nothing can be sent before the TLS handshake.
    size_t sent = 0;
    auto ec = startConnect(worker_.io, socket, endpoint,
                           tls_ == nullptr ? first_bytes : std::string_view(), sent);
    bool timed_out = false;
    if (ec == asio::error::in_progress) {  // only a connect that must wait arms the deadline
      deadline.arm(cluster_.connect_timeout, [&socket] {
        boost::system::error_code ignored;
        socket.close(ignored);
      });
      ec = co_await awaitConnected(socket);
      timed_out = deadline.expired();
    }
    result.timed_out = timed_out;
    result.tls_failed = false;
    if (!timed_out && !ec && tls_ == nullptr) {
      result.stream.emplace(std::move(socket));
      result.sent = sent;
      co_return result;
    }
    if (!timed_out && !ec) {
      if (!deadline.armed()) deadline.arm(cluster_.connect_timeout, {});
      const config::Address& address = cluster_.endpoints[index];
      std::optional<Stream> stream = co_await handshake(
          std::move(socket), address.host.empty() ? address.ip : address.host, deadline, result);
      if (stream) {
        result.stream = std::move(stream);
        co_return result;
      }
      continue;  // counted and logged by handshake()
    }
    failures_.add(1);
    attemptFailed(result.endpoint, timed_out ? "connect timed out" : ec.message());
  }
  co_return result;
}

void TcpUpstream::attemptFailed(std::string_view endpoint, std::string_view why) {
  if (auto admitted = connect_failures_log_.admit()) {
    spdlog::warn("cluster {}: connect to {} failed: {}{}", cluster_.name, endpoint, why,
                 admitted->suffix());
  }
}

asio::awaitable<std::optional<Stream>> TcpUpstream::handshake(tcp::socket socket,
                                                             std::string_view host,
                                                             Deadline& deadline,
                                                             UpstreamConnection& result) {
  SslPtr ssl = tls_->newSession(host);
  std::string_view reason = "other";
  std::string error = "TLS session could not be created";
  if (ssl) {
    Stream stream(TlsTransport(std::move(socket), std::move(ssl)));
    deadline.retarget([&stream] { stream.cancel(); });
    auto [ec] = co_await stream.async_tls_handshake(asio::as_tuple(asio::use_awaitable));
    deadline.disarm();
    if (!ec && !deadline.expired()) co_return std::optional<Stream>(std::move(stream));
    result.timed_out = deadline.expired();
    reason = result.timed_out ? "timeout" : tlsFailureReason(ec, false);
    // Toward a backend the finer reasons of a client handshake say little: one bucket.
    if (reason != "timeout" && reason != "verify_failed" && reason != "closed") {
      reason = "handshake_failed";
    }
    error = result.timed_out ? std::string("TLS handshake timed out")
                             : "TLS handshake failed: " + ec.message();
    if (!result.timed_out && reason == "verify_failed") {
      const long verify = SSL_get_verify_result(stream.tls());
      error += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    }
    stream.close();
  }
  result.tls_failed = true;
  worker_.stats.cell(Metric::kUpstreamTlsFailures, {cluster_.name, reason}).add(1);
  attemptFailed(result.endpoint, error);
  co_return std::nullopt;
}

}  // namespace wsgate::gateway
