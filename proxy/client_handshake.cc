#include "proxy/client_handshake.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <memory_resource>
#include <span>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "filters/filter.h"
#include "proxy/connection_record.h"
#include "io/deadline.h"
#include "io/tls_context.h"
#include "codec/handshake.h"
#include "codec/http_head.h"
#include "proxy/session.h"

namespace wsgate::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// Where the rest of the head would come from, for X-Forwarded-Proto.
std::string_view schemeOf(Stream& client) { return client.tls() ? "https" : "http"; }
constexpr size_t kFirstHeadRead = 4096;  // a browser's upgrade request is well under this
constexpr size_t kMaxUpstreamHead = 16 * 1024;
constexpr size_t kUpstreamHeadRead = 512;  // a 101 fits; a longer head takes more reads
constexpr size_t kMaxUpstreamBody = 64 * 1024;  // a refusal page passed back to the client
constexpr auto kResponseWriteTimeout = std::chrono::seconds(5);
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 256 * 1024;
// Room for the fields of both heads of a usual handshake, a browser's included; more spills to
// the heap.
constexpr size_t kHeadMemory = 2048;

// Writes what the socket takes at once (a head on a fresh connection nearly always fits), so
// the usual case needs no asynchronous write and no deadline; returns the bytes written, with
// `ec` set only on a real error.
size_t writeNow(Stream& stream, std::string_view bytes, error_code& ec) {
  const asio::const_buffer buffer(bytes.data(), bytes.size());
  const size_t written = stream.writeSome({&buffer, 1}, ec);
  if (ec == asio::error::would_block) ec = {};
  return written;
}

// The listener defers accepts until the client has sent something (listener.cc), so the request
// head is nearly always complete at accept: parse what is there at once, so that the usual
// handshake arms no timer and needs no trip through the loop for it. The read lands in the
// worker's shared buffer; only bytes that must outlive this call (a partial head, or bytes
// sent behind a complete one) are copied into `buffer`, which allocates nothing otherwise.
// Returns a parse error; a read that finds nothing, or fails, is left to the asynchronous read
// that follows.
error_code parseHeadNow(Stream& stream, std::span<uint8_t> scratch, beast::flat_buffer& buffer,
                        RequestParser& parser) {
  error_code ec;
  const size_t limit = std::min({buffer.max_size(), kFirstHeadRead, scratch.size()});
  const size_t n = stream.readSome(asio::buffer(scratch.data(), limit), ec);
  if (ec) return {};
  const size_t used = parser.put(asio::const_buffer(scratch.data(), n), ec);
  if (ec && ec != http::error::need_more) return ec;
  if (used < n) {
    buffer.commit(asio::buffer_copy(buffer.prepare(n - used),
                                    asio::const_buffer(scratch.data() + used, n - used)));
  }
  return {};
}

// The client's address as text, for X-Forwarded-For, filters and logs. IPv4 is written here:
// inet_ntop formats it with sprintf, a measurable share of a handshake's user time.
std::string addressText(const asio::ip::address& address) {
  if (!address.is_v4()) return address.to_string();
  const auto bytes = address.to_v4().to_bytes();
  std::string text;  // at most 15 characters: no allocation
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i > 0) text += '.';
    std::array<char, 3> digits;
    const auto end = std::to_chars(digits.data(), digits.data() + digits.size(), bytes[i]).ptr;
    text.append(digits.data(), end);
  }
  return text;
}

class RequestView final : public filters::HandshakeRequest {
 public:
  RequestView(const RequestHead& request, std::string_view client, std::string_view route,
              bool secure, std::string_view certificate)
      : request_(request),
        client_(client),
        route_(route),
        secure_(secure),
        certificate_(certificate) {}
  std::optional<std::string_view> header(std::string_view name) const override {
    auto it = request_.find(name);
    if (it == request_.end()) return std::nullopt;
    return it->value();
  }
  std::string_view target() const override { return request_.target(); }
  std::string_view clientAddress() const override { return client_; }
  std::string_view routeName() const override { return route_; }
  bool secure() const override { return secure_; }
  std::string_view clientCertificate() const override { return certificate_; }

 private:
  const RequestHead& request_;
  std::string_view client_;
  std::string_view route_;
  bool secure_;
  std::string_view certificate_;
};

// State of one handshake; lives in the coroutine frame.
class Handshake {
 public:
  Handshake(WorkerContext& worker, std::shared_ptr<const RoutingTable> table, size_t listener,
            asio::ip::tcp::socket socket, std::string client_ip, ListenerSlot slot)
      : worker_(worker),
        table_(std::move(table)),
        listener_(table_->config()->listeners[listener]),
        listener_index_(listener),
        record_(worker.stats, listener_.name, std::move(slot)),
        client_(std::move(socket)),
        client_ip_(std::move(client_ip)),
        deadline_(worker.deadlines) {}

  asio::awaitable<void> run();
  // On a TLS listener, before anything else: the TLS handshake, bounded by handshake_timeout.
  // False when it failed (counted, logged, connection closed).
  asio::awaitable<bool> tlsHandshake(const ServerTlsContext& tls);
  // run() threw: answers 500 if nothing was sent to the client yet, else just closes.
  asio::awaitable<void> fail(std::exception_ptr error);

 private:
  asio::awaitable<void> reject(unsigned status, std::string_view reason,
                               std::string_view metric_reason, unsigned retry_after = 0);
  // A handshake filter refused: counted under the filter's name and label, answered.
  asio::awaitable<void> refuse(const config::Route& route, const filters::FilterFactory& factory,
                               const filters::HandshakeRejection& rejection);
  asio::awaitable<void> send(HttpResponse response);
  asio::awaitable<void> passBackRefusal(Stream& upstream, beast::flat_buffer& buffer,
                                        ResponseParser& parser,
                                        const config::Cluster& cluster);

  // A parser whose fields land in head_memory_.
  template <class Parser>
  Parser makeParser() {
    return Parser(std::piecewise_construct, std::make_tuple(),
                  std::make_tuple(HeadAllocator<char>(&head_memory_)));
  }

  // Both heads' fields, freed at once with the handshake (head_fields.h). Declared first, so
  // that it outlives whatever holds a head.
  std::array<std::byte, kHeadMemory> head_block_;
  std::pmr::monotonic_buffer_resource head_memory_{head_block_.data(), head_block_.size(),
                                                   std::pmr::new_delete_resource()};
  WorkerContext& worker_;
  std::shared_ptr<const RoutingTable> table_;
  const config::Listener& listener_;
  size_t listener_index_;
  ConnectionRecord record_;
  Stream client_;
  std::string client_ip_;
  Deadline deadline_;
  bool answered_ = false;  // bytes of an answer may have reached the client
  std::string identity_;   // the verified client certificate, when there is one
  // Slots handshake filters took (live connection counts): given back when this handshake
  // ends, or when the session it became ends.
  filters::Admissions admissions_;
};

asio::awaitable<bool> Handshake::tlsHandshake(const ServerTlsContext& tls) {
  SslPtr ssl = tls.newSession();
  std::string_view reason = "other";
  if (ssl) {
    client_ = Stream(TlsTransport(std::move(client_.socket()), std::move(ssl)));
    deadline_.arm(listener_.tls->handshake_timeout, [this] { client_.cancel(); });
    auto [ec] = co_await client_.async_tls_handshake(kToken);
    deadline_.disarm();
    if (!ec && !deadline_.expired()) {
      worker_.stats.cell(Metric::kTlsHandshakes, {listener_.name, tlsVersionLabel(client_.tls())})
          .add(1);
      if (!listener_.tls->client_ca_pem.empty()) identity_ = verifiedPeerIdentity(client_.tls());
      if (!identity_.empty()) {
        spdlog::debug("client {} on listener {}: certificate {}", client_ip_, listener_.name,
                      identity_);
      }
      co_return true;
    }
    reason = deadline_.expired() ? "timeout" : tlsFailureReason(ec, true);
    spdlog::debug("TLS handshake from {} on listener {} failed: {}", client_ip_, listener_.name,
                  deadline_.expired() ? "timed out" : ec.message());
  }
  worker_.stats.cell(Metric::kTlsHandshakeFailures, {listener_.name, reason}).add(1);
  record_.setOutcome(outcome::kTlsFailed);
  client_.close();
  co_return false;
}

asio::awaitable<void> Handshake::run() {
  if (const ServerTlsContext* tls = table_->listenerTls(listener_index_)) {
    if (!co_await tlsHandshake(*tls)) co_return;
  }
  // 1. Request head, bounded in bytes and time.
  beast::flat_buffer buffer(listener_.max_request_bytes);
  RequestParser parser = makeParser<RequestParser>();
  parser.header_limit(listener_.max_request_bytes);
  error_code read_ec = parseHeadNow(client_, worker_.read_buffer, buffer, parser);
  if (!read_ec && !parser.is_header_done()) {
    deadline_.arm(listener_.request_timeout, [this] { client_.cancel(); });
    auto [async_ec, head_size] = co_await http::async_read_header(client_, buffer, parser, kToken);
    deadline_.disarm();
    if (deadline_.expired()) co_return co_await reject(408, "request head timed out", "timeout");
    read_ec = async_ec;
  }
  if (read_ec == http::error::header_limit || read_ec == http::error::buffer_overflow) {
    co_return co_await reject(431, "request header too large", "header_too_large");
  }
  if (read_ec == http::error::end_of_stream || read_ec == asio::error::eof ||
      read_ec == http::error::partial_message || read_ec == asio::error::connection_reset) {
    co_return;  // the client left; nobody to answer
  }
  if (read_ec) co_return co_await reject(400, "malformed HTTP request", "malformed");
  const RequestHead& request = parser.get().base();
  if (static_cast<size_t>(std::distance(request.begin(), request.end())) >
      listener_.max_request_headers) {
    co_return co_await reject(431, "too many request headers", "too_many_headers");
  }

  // 2. RFC 6455 rules.
  auto validated = validateUpgradeRequest(request);
  if (auto* bad = std::get_if<HttpRejection>(&validated)) {
    co_return co_await reject(bad->status, bad->reason, bad->metric_reason);
  }
  ClientUpgrade upgrade = std::get<ClientUpgrade>(std::move(validated));

  // 3. Route.
  auto host = request.find(http::field::host);
  const config::Route* route =
      table_->router(listener_index_).match(host == request.end() ? "" : host->value(),
                                            request.target());
  if (!route) co_return co_await reject(404, "no route for this host and path", "no_route");
  if (route->require_tls && !client_.tls()) {
    co_return co_await reject(403, "this route requires TLS", "tls_required");
  }

  // 4. Handshake filters.
  RequestView view(request, client_ip_, route->name, client_.tls() != nullptr, identity_);
  for (const auto& spec : route->filters) {
    const auto* factory = static_cast<const filters::FilterFactory*>(spec.built.get());
    const filters::HandshakeFilter* filter = factory->handshakeFilter();
    if (!filter) continue;
    if (auto rejection = filter->onHandshake(view)) {
      co_return co_await refuse(*route, *factory, *rejection);
    }
  }
  for (const auto& spec : route->filters) {
    const auto* factory = static_cast<const filters::FilterFactory*>(spec.built.get());
    const filters::HandshakeFilter* filter = factory->handshakeFilter();
    if (!filter) continue;
    if (auto rejection = filter->admit(view, admissions_)) {
      co_return co_await refuse(*route, *factory, *rejection);
    }
  }

  // 5. Upstream: connect, forward the upgrade, read the answer.
  // Filters that read payloads need them uncompressed: no extension is offered to the backend,
  // and one it agrees to anyway is refused as not offered.
  const bool plain_payloads =
      std::any_of(route->filters.begin(), route->filters.end(), [](const config::FilterSpec& s) {
        return static_cast<const filters::FilterFactory*>(s.built.get())->readsPayload();
      });
  if (plain_payloads) upgrade.extension_names.clear();
  std::string forwarded =
      upstreamRequestHead(request, client_ip_, schemeOf(client_),
                          {route->client_cert_header, identity_}, plain_payloads);
  const config::Cluster* cluster = table_->config()->findCluster(route->cluster);
  Upstream* upstream_source = table_->upstream(route->cluster);
  // The request may go out with the connect (a plain backend that accepts at once).
  UpstreamConnection connection = co_await upstream_source->connect(forwarded);
  if (!connection.stream) {
    record_.setOutcome(outcome::kUpstreamError);
    if (connection.tls_failed && !connection.timed_out) {
      co_return co_await reject(502, "upstream TLS handshake failed", "upstream_tls");
    }
    if (connection.timed_out) {
      co_return co_await reject(504, "upstream connect timed out", "upstream_timeout");
    }
    co_return co_await reject(502, "upstream unavailable", "upstream_unavailable");
  }
  Stream& upstream = *connection.stream;
  beast::flat_buffer upstream_buffer(kMaxUpstreamHead + kMaxUpstreamBody);
  ResponseParser response_parser = makeParser<ResponseParser>();
  response_parser.header_limit(kMaxUpstreamHead);
  response_parser.body_limit(kMaxUpstreamBody);
  // One deadline for the whole exchange: the backend must answer within response_timeout.
  deadline_.arm(cluster->response_timeout, [&upstream] { upstream.cancel(); });
  error_code exchange_ec;
  size_t sent = connection.sent;
  if (sent < forwarded.size()) {
    sent += writeNow(upstream, std::string_view(forwarded).substr(sent), exchange_ec);
  }
  if (!exchange_ec && sent < forwarded.size()) {
    auto [write_ec, written] =
        co_await asio::async_write(upstream, asio::buffer(forwarded) + sent, kToken);
    exchange_ec = write_ec;
  }
  // The backend's answer, read until Beast's parser has its head. Fed here rather than through
  // http::async_read_header: that composed operation's executor and work bookkeeping cost more
  // than the one read a 101 takes.
  while (!exchange_ec && !response_parser.is_header_done()) {
    const size_t room = upstream_buffer.max_size() - upstream_buffer.size();
    if (room == 0) {
      exchange_ec = http::error::buffer_overflow;
      break;
    }
    auto [read_ec, n] = co_await upstream.async_read_some(
        upstream_buffer.prepare(std::min(room, kUpstreamHeadRead)), kToken);
    if (read_ec == asio::error::eof) {
      // As Beast says it: nothing of an answer, or part of one.
      exchange_ec = upstream_buffer.size() == 0 ? http::error::end_of_stream
                                                : http::error::partial_message;
    } else {
      exchange_ec = read_ec;
    }
    if (exchange_ec) break;
    upstream_buffer.commit(n);
    upstream_buffer.consume(response_parser.put(upstream_buffer.data(), exchange_ec));
    if (exchange_ec == http::error::need_more) exchange_ec = {};
  }
  deadline_.disarm();
  const bool timed_out = deadline_.expired();
  if (exchange_ec || timed_out) {
    record_.setOutcome(outcome::kUpstreamError);
    if (auto admitted = upstream_source->exchangeFailuresLog().admit()) {
      spdlog::warn("cluster {}: upgrade exchange with {} failed: {}{}", cluster->name,
                   connection.endpoint, timed_out ? "no answer in time" : exchange_ec.message(),
                   admitted->suffix());
    }
    if (timed_out) {
      co_return co_await reject(504, "upstream did not answer the upgrade in time",
                                "upstream_timeout");
    }
    co_return co_await reject(502, "upstream failed during the upgrade", "upstream_bad_handshake");
  }
  if (response_parser.get().result() != http::status::switching_protocols) {
    co_return co_await passBackRefusal(upstream, upstream_buffer, response_parser, *cluster);
  }
  auto agreed = validateUpstreamResponse(response_parser.get().base(), upgrade);
  if (auto* bad = std::get_if<HttpRejection>(&agreed)) {
    record_.setOutcome(outcome::kUpstreamError);
    if (auto admitted = upstream_source->exchangeFailuresLog().admit()) {
      spdlog::warn("cluster {}: bad upgrade answer from {}: {}{}", cluster->name,
                   connection.endpoint, bad->reason, admitted->suffix());
    }
    co_return co_await reject(bad->status, bad->reason, bad->metric_reason);
  }
  const auto& accepted = response_parser.get().base();
  const auto chosen = accepted.find(http::field::sec_websocket_protocol);
  const std::string_view protocol = chosen == accepted.end() ? "" : chosen->value();
  for (const auto& spec : route->filters) {
    const auto* factory = static_cast<const filters::FilterFactory*>(spec.built.get());
    const filters::HandshakeFilter* filter = factory->handshakeFilter();
    if (!filter) continue;
    if (auto rejection = filter->onUpstreamAccepted(view, protocol)) {
      record_.setOutcome(outcome::kUpstreamError);
      upstream.close();
      co_return co_await refuse(*route, *factory, *rejection);
    }
  }

  // 6. Answer the client with the backend's 101, then relay.
  // Written where the forwarded request was: it has gone out whole.
  const std::string switching = headBytes(response_parser.get().base(), std::move(forwarded));
  answered_ = true;
  error_code answer_ec;
  const size_t answered = writeNow(client_, switching, answer_ec);
  if (!answer_ec && answered < switching.size()) {
    deadline_.arm(kResponseWriteTimeout, [this] { client_.cancel(); });
    auto [rest_ec, rest_size] =
        co_await asio::async_write(client_, asio::buffer(switching) + answered, kToken);
    deadline_.disarm();
    answer_ec = rest_ec;
  }
  if (answer_ec) co_return;

  SessionSetup setup;
  setup.config = table_->config();
  setup.route = route;
  setup.client_address = client_ip_;
  setup.permessage_deflate = std::get<UpstreamAgreement>(agreed).permessage_deflate;
  setup.admissions = std::move(admissions_);
  spdlog::debug("session started: listener={} route={} client={} upstream={}", listener_.name,
                route->name, client_ip_, connection.endpoint);
  auto client_early = buffer.data();
  auto upstream_early = upstream_buffer.data();
  auto session = std::make_shared<Session>(worker_, std::move(client_), std::move(upstream),
                                           std::move(setup), std::move(record_));
  session->start({static_cast<const uint8_t*>(client_early.data()), client_early.size()},
                 {static_cast<const uint8_t*>(upstream_early.data()), upstream_early.size()});
}

asio::awaitable<void> Handshake::reject(unsigned status, std::string_view reason,
                                        std::string_view metric_reason, unsigned retry_after) {
  worker_.stats.cell(Metric::kHandshakeRejections, {listener_.name, metric_reason}).add(1);
  if (status < 500) record_.setOutcome(outcome::kRejected);
  spdlog::debug("handshake from {} on listener {} rejected: {} {}", client_ip_, listener_.name,
                status, reason);
  auto response = makeErrorResponse(status, reason);
  if (status == 426) response.set(http::field::sec_websocket_version, "13");
  if (retry_after > 0) response.set(http::field::retry_after, std::to_string(retry_after));
  co_await send(std::move(response));
}

asio::awaitable<void> Handshake::refuse(const config::Route& route,
                                        const filters::FilterFactory& factory,
                                        const filters::HandshakeRejection& rejection) {
  worker_.stats.cell(Metric::kFilterRejections, {route.name, factory.name(), rejection.label})
      .add(1);
  co_await reject(rejection.status, rejection.reason, factory.name(),
                  rejection.retry_after_seconds);
}

asio::awaitable<void> Handshake::send(HttpResponse response) {
  answered_ = true;
  deadline_.arm(kResponseWriteTimeout, [this] { client_.cancel(); });
  auto [write_ec, written] = co_await http::async_write(client_, response, kToken);
  deadline_.disarm();
  if (!write_ec && client_.mayHaveUnread()) {
    // Closing with unread request bytes would make the kernel send a reset that can destroy
    // the answer before the client reads it: send FIN, then discard what is still coming,
    // bounded in bytes and time (a lingering close, as nginx does).
    client_.shutdownSend();
    deadline_.arm(kLingerTimeout, [this] { client_.cancel(); });
    std::array<char, 4096> sink;
    for (size_t discarded = 0; discarded < kLingerBytes;) {
      auto [read_ec, n] = co_await client_.async_read_some(asio::buffer(sink), kToken);
      if (read_ec) break;
      discarded += n;
    }
    deadline_.disarm();
  }
  client_.close();
}

asio::awaitable<void> Handshake::fail(std::exception_ptr error) {
  record_.setOutcome(outcome::kFailed);
  std::string_view what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();  // lives as long as `error`
  } catch (...) {
  }
  spdlog::error("handshake from {} on listener {} failed: {}", client_ip_, listener_.name, what);
  deadline_.disarm();
  if (answered_ || !client_.isOpen()) {
    client_.close();
    co_return;
  }
  co_await reject(500, "internal error", "internal_error");
  record_.setOutcome(outcome::kFailed);  // reject() counts the answer, not the outcome
}

asio::awaitable<void> Handshake::passBackRefusal(Stream& upstream, beast::flat_buffer& buffer,
                                                 ResponseParser& parser,
                                                 const config::Cluster& cluster) {
  // No tunnel: the backend's answer goes back whole and the connection ends.
  record_.setOutcome(outcome::kUpstreamDeclined);
  worker_.stats.cell(Metric::kHandshakeRejections, {listener_.name, "upstream_declined"}).add(1);
  deadline_.arm(cluster.response_timeout, [&upstream] { upstream.cancel(); });
  auto [body_ec, body_size] = co_await http::async_read(upstream, buffer, parser, kToken);
  deadline_.disarm();
  upstream.close();
  if ((body_ec && body_ec != http::error::end_of_stream) || deadline_.expired()) {
    co_return co_await reject(502, "upstream answered the upgrade with a broken response",
                              "upstream_bad_handshake");
  }
  HttpResponse response = parser.release();
  spdlog::debug("upstream declined the upgrade from {} with {}", client_ip_, response.result_int());
  prepareRefusalForClient(response);
  co_await send(std::move(response));
}

}  // namespace

asio::awaitable<void> serveClient(WorkerContext& worker, std::shared_ptr<const RoutingTable> table,
                                  size_t listener_index, asio::ip::tcp::socket socket,
                                  asio::ip::tcp::endpoint peer, ListenerSlot slot) {
  Handshake handshake(worker, std::move(table), listener_index, std::move(socket),
                      addressText(peer.address()), std::move(slot));
  std::exception_ptr error;
  try {
    co_await handshake.run();
  } catch (...) {
    error = std::current_exception();  // a failure ends this connection only
  }
  if (error) co_await handshake.fail(error);
}

}  // namespace wsgate::gateway
