// Fuzzes the opening handshake as proxy/client_handshake.cc runs it, through the public
// functions only:
//  1. the client's request head is read with Beast's request parser under the listener's limits
//     (flat_buffer and header_limit of max_request_bytes, then max_request_headers), first with
//     one read parsed at once (parseHeadNow), then with http::read_header for the rest;
//  2. validateUpgradeRequest (codec/handshake.h), the router (routing/router.h) on Host and
//     target, and the route's `origin` filter on the Origin header;
//  3. the request forwarded upstream (upstreamRequestHead / makeUpstreamRequest): it must be a
//     well-formed head that a backend parses into a valid upgrade request, without the
//     hop-by-hop fields and with the client's Host and Sec-WebSocket-* fields intact;
//  4. whatever follows the request head in the input is taken as the backend's answer: read with
//     Beast's response parser under the gateway's limits, then either validateUpstreamResponse
//     (101) and headBytes (the 101 relayed to the client), or the refusal passed back whole.
//
// Input: [flags][k read sizes][request head, then the backend's answer...], k = flags & 7; reads
// take the sizes in turn (0 counts as 1), k == 0 means reads of up to 4096 bytes.
//   flags & 0x08: small listener limits (max_request_bytes 1KiB, max_request_headers 8)
//   flags & 0x10: replace the backend's Sec-WebSocket-Accept with the right one, so that the
//                 checks past it are reachable
//
// Also: Sec-WebSocket-Key and Host exactly once in an accepted request (RFC 6455 §11.3.1,
// RFC 9112 §3.2), and a refusal relayed with a Content-Length only when no transfer coding is
// left on its body.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <boost/system/system_error.hpp>

#include "config/loader.h"
#include "filters/filter.h"
#include "filters/origin.h"
#include "filters/registry.h"
#include "codec/handshake.h"
#include "codec/http_head.h"
#include "routing/router.h"
#include "tests/fuzz/fuzz_check.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using namespace wsgate;
using namespace wsgate::gateway;

namespace {

// Values client_handshake.cc uses (constants private to it, repeated here).
constexpr size_t kFirstHeadRead = 4096;
constexpr size_t kMaxUpstreamHead = 16 * 1024;
constexpr size_t kMaxUpstreamBody = 64 * 1024;

// A socket stand-in: hands out `data` in reads whose sizes come from the input, then EOF (the
// peer closed).
class ChunkedStream {
 public:
  ChunkedStream(std::span<const uint8_t> data, std::span<const uint8_t> sizes)
      : data_(data), sizes_(sizes) {}

  template <typename MutableBuffers>
  size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    if (pos_ == data_.size()) {
      ec = asio::error::eof;
      return 0;
    }
    size_t want = kFirstHeadRead;
    if (!sizes_.empty()) want = std::max<size_t>(1, sizes_[next_++ % sizes_.size()]);
    want = std::min(want, data_.size() - pos_);
    const size_t n = asio::buffer_copy(buffers, asio::buffer(data_.data() + pos_, want));
    pos_ += n;
    ec = {};
    return n;
  }
  template <typename MutableBuffers>
  size_t read_some(const MutableBuffers& buffers) {
    error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  std::span<const uint8_t> unread() const { return data_.subspan(pos_); }

 private:
  std::span<const uint8_t> data_;
  std::span<const uint8_t> sizes_;
  size_t pos_ = 0;
  size_t next_ = 0;
};

// The routes and filters the router and the origin filter are fuzzed with.
constexpr std::string_view kConfig = R"(
listeners:
  - name: public
    address: 127.0.0.1:8080
    routes:
      - name: exact
        match: { host: chat.example.com, path: /chat }
        cluster: echo
        filters:
          - origin: { allow: ["https://chat.example.com", "https://*.example.com:8443", "http://[::1]:8080"], require: true }
      - name: wildcard
        match: { host: "*.example.org", path_prefix: /ws/ }
        cluster: echo
        filters:
          - origin: { allow: ["https://*.example.org"] }
      - name: any
        match: { path_prefix: / }
        cluster: echo
clusters:
  - name: echo
    type: echo
)";

struct Setup {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<Router> router;
};

const Setup& setup() {
  static const Setup s = [] {
    Setup out;
    auto loaded = config::loadString(std::string(kConfig), "fuzz.yaml", filters::Registry::global());
    if (!loaded.config) {
      std::fprintf(stderr, "fuzz config rejected:\n%s", loaded.diagnostics.format().c_str());
      std::abort();
    }
    out.config = loaded.config;
    out.router = std::make_unique<Router>(out.config->listeners[0]);
    return out;
  }();
  return s;
}

// filters::HandshakeRequest over a parsed head.
class HeadView final : public filters::HandshakeRequest {
 public:
  HeadView(const RequestHead& request, std::string_view route)
      : request_(request), route_(route) {}
  std::optional<std::string_view> header(std::string_view name) const override {
    auto it = request_.find(name);
    if (it == request_.end()) return std::nullopt;
    return it->value();
  }
  std::string_view target() const override { return request_.target(); }
  std::string_view clientAddress() const override { return "192.0.2.1"; }
  std::string_view routeName() const override { return route_; }
  bool secure() const override { return false; }
  std::string_view clientCertificate() const override { return {}; }

 private:
  const RequestHead& request_;
  std::string_view route_;
};

bool iequals(std::string_view a, std::string_view b) { return beast::iequals(a, b); }

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string asciiCase(std::string_view s, bool upper) {
  std::string out(s);
  for (char& c : out) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool isTrimmedToken(std::string_view t) {
  return !t.empty() && t.front() != ' ' && t.front() != '\t' && t.back() != ' ' &&
         t.back() != '\t';
}

// Feeds a whole message to `parser` as a peer would receive it (Beast's put() stops after the
// header, so it is called until the message is done; the end of `bytes` is the peer's EOF).
// True if exactly `bytes` make one complete message.
template <typename Parser>
bool parseWhole(Parser& parser, std::string_view bytes) {
  size_t pos = 0;
  while (!parser.is_done()) {
    error_code ec;
    const size_t n = parser.put(asio::buffer(bytes.data() + pos, bytes.size() - pos), ec);
    pos += n;
    if (ec == http::error::need_more || (!ec && n == 0)) {
      if (pos < bytes.size() && n > 0) continue;
      parser.put_eof(ec);
      if (ec) return false;
      break;
    }
    if (ec) return false;
  }
  return parser.is_done() && pos == bytes.size();
}

void checkRejection(const HttpRejection& r) {
  FUZZ_CHECK(r.status == 400 || r.status == 426);
  FUZZ_CHECK(!r.reason.empty());
  FUZZ_CHECK(!r.metric_reason.empty());
  for (char c : r.metric_reason) FUZZ_CHECK((c >= 'a' && c <= 'z') || c == '_');
  // The answer the client gets is one complete HTTP response that closes the connection.
  auto response = makeErrorResponse(r.status, r.reason);
  std::ostringstream wire;
  wire << response;
  const std::string bytes = wire.str();
  ResponseParser parser;
  FUZZ_CHECK(parseWhole(parser, bytes));
  FUZZ_CHECK(parser.get().result_int() == r.status);
  FUZZ_CHECK(!parser.get().keep_alive());
}

// Parses a whole head (as a backend would the forwarded request); returns false on error.
bool parseRequestHead(const std::string& bytes, RequestParser& parser) {
  parser.header_limit(static_cast<uint32_t>(bytes.size()) + 1);
  error_code ec;
  const size_t used = parser.put(asio::buffer(bytes), ec);
  return !ec && parser.is_header_done() && used == bytes.size();
}

void checkForwarded(const RequestHead& request, const ClientUpgrade& upgrade) {
  const std::string client_ip = "192.0.2.1";
  const std::string forwarded = upstreamRequestHead(request, client_ip, "http");
  // The same request built as a header object, written out, gives the same bytes.
  FUZZ_CHECK(headBytes(makeUpstreamRequest(request, client_ip, "http")) == forwarded);

  RequestParser parser;
  FUZZ_CHECK(parseRequestHead(forwarded, parser));
  const RequestHead& out = parser.get().base();
  FUZZ_CHECK(out.method() == http::verb::get);
  FUZZ_CHECK(out.target() == request.target());
  FUZZ_CHECK(out.version() == 11);

  // What the client's Connection header names is for this hop only (except the fields the
  // backend needs to complete the handshake).
  std::vector<std::string> named;
  for (const auto& line : request) {  // every Connection line, wherever it is
    if (line.name() != http::field::connection) continue;
    std::string_view list = line.value();
    while (true) {
      const size_t comma = list.find(',');
      std::string_view t = list.substr(0, comma);
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (!t.empty()) named.emplace_back(t);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  size_t connection = 0, upgrade_fields = 0, xff = 0, xfp = 0;
  for (const auto& f : out) {
    const std::string_view name = f.name_string();
    if (iequals(name, "connection")) {
      ++connection;
      FUZZ_CHECK(f.value() == "Upgrade");
    } else if (iequals(name, "upgrade")) {
      ++upgrade_fields;
      FUZZ_CHECK(f.value() == "websocket");
    } else if (iequals(name, "x-forwarded-for")) {
      ++xff;
      const std::string_view v = f.value();
      FUZZ_CHECK(v.size() >= client_ip.size() && v.substr(v.size() - client_ip.size()) == client_ip);
    } else if (iequals(name, "x-forwarded-proto")) {
      ++xfp;
      FUZZ_CHECK(f.value() == "http");
    } else {
      for (std::string_view hop : {"keep-alive", "te", "trailer", "transfer-encoding"}) {
        FUZZ_CHECK(!iequals(name, hop));
      }
      FUZZ_CHECK(!startsWithIgnoreCase(name, "proxy-"));
      if (!iequals(name, "host") && !startsWithIgnoreCase(name, "sec-websocket-")) {
        for (const auto& n : named) FUZZ_CHECK(!iequals(name, n));
      }
    }
  }
  FUZZ_CHECK(connection == 1 && upgrade_fields == 1 && xff == 1 && xfp == 1);

  // Host and Sec-WebSocket-* pass through unchanged and in order.
  auto kept = [](const RequestHead& h) {
    std::vector<std::pair<std::string, std::string>> v;
    for (const auto& f : h) {
      if (iequals(f.name_string(), "host") || startsWithIgnoreCase(f.name_string(), "sec-websocket-")) {
        v.emplace_back(asciiCase(f.name_string(), false), std::string(f.value()));
      }
    }
    return v;
  };
  FUZZ_CHECK(kept(request) == kept(out));

  // The backend sees a valid upgrade request: the same key, protocols and extensions.
  auto again = validateUpgradeRequest(out);
  FUZZ_CHECK(std::holds_alternative<ClientUpgrade>(again));
  const ClientUpgrade& u = std::get<ClientUpgrade>(again);
  FUZZ_CHECK(u.key == upgrade.key);
  FUZZ_CHECK(u.protocols == upgrade.protocols);
  FUZZ_CHECK(u.extension_names == upgrade.extension_names);
}

void checkRouteAndOrigin(const RequestHead& request) {
  const Setup& s = setup();
  auto host = request.find(http::field::host);
  const std::string_view host_value = host == request.end() ? "" : host->value();
  const config::Route* route = s.router->match(host_value, request.target());
  // The catch-all route matches every target that starts with "/" (origin-form).
  if (!request.target().empty() && request.target().front() == '/') FUZZ_CHECK(route != nullptr);
  if (!route) return;
  const auto& routes = s.config->listeners[0].routes;
  FUZZ_CHECK(route >= routes.data() && route < routes.data() + routes.size());
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  if (route->match.path_exact) FUZZ_CHECK(path == *route->match.path_exact);
  if (route->match.path_prefix) FUZZ_CHECK(path.starts_with(*route->match.path_prefix));

  HeadView view(request, route->name);
  for (const auto& spec : route->filters) {
    const auto* factory = static_cast<const filters::FilterFactory*>(spec.built.get());
    const filters::HandshakeFilter* filter = factory->handshakeFilter();
    if (!filter) continue;
    auto verdict = filter->onHandshake(view);
    if (verdict) FUZZ_CHECK(verdict->status == 403 && !verdict->reason.empty());
    if (factory->name() == "origin") {
      const auto* origin = static_cast<const filters::OriginFilter*>(factory);
      if (auto value = view.header("Origin")) {
        // Comparison is case-insensitive (filters/origin.h).
        const bool allowed = origin->allows(*value);
        FUZZ_CHECK(origin->allows(asciiCase(*value, false)) == allowed);
        FUZZ_CHECK(origin->allows(asciiCase(*value, true)) == allowed);
        FUZZ_CHECK(allowed == !verdict.has_value());
      }
    }
  }
}

// The backend's answer to the forwarded upgrade, read and checked as the gateway does.
void checkUpstreamAnswer(std::span<const uint8_t> bytes, std::span<const uint8_t> sizes,
                         const ClientUpgrade& upgrade, bool fix_accept) {
  ChunkedStream upstream(bytes, sizes);
  beast::flat_buffer buffer(kMaxUpstreamHead + kMaxUpstreamBody);
  ResponseParser parser;
  parser.header_limit(kMaxUpstreamHead);
  parser.body_limit(kMaxUpstreamBody);
  error_code ec;
  http::read_header(upstream, buffer, parser, ec);
  if (ec) return;  // 502
  if (parser.get().result() != http::status::switching_protocols) {
    // The refusal goes back to the client whole, as one response that ends the connection.
    http::read(upstream, buffer, parser, ec);
    if (ec && ec != http::error::end_of_stream) return;  // 502
    HttpResponse response = parser.release();
    prepareRefusalForClient(response);  // as passBackRefusal does
    if (response.find(http::field::transfer_encoding) != response.end()) {
      // A coding stays on the body: close-delimited, never a length beside it (RFC 9112 §6.2).
      FUZZ_CHECK(response.find(http::field::content_length) == response.end());
      return;
    }
    std::ostringstream wire;
    wire << response;
    const std::string out = wire.str();
    ResponseParser client;
    client.body_limit(out.size());
    client.header_limit(static_cast<uint32_t>(out.size()) + 1);
    FUZZ_CHECK(parseWhole(client, out));
    FUZZ_CHECK(client.get().result_int() == response.result_int());
    FUZZ_CHECK(client.get().find(http::field::upgrade) == client.get().end());
    return;
  }
  ResponseHead head = parser.get().base();
  if (fix_accept) head.set(http::field::sec_websocket_accept, computeAccept(upgrade.key));
  auto agreed = validateUpstreamResponse(head, upgrade);
  if (auto* bad = std::get_if<HttpRejection>(&agreed)) {
    FUZZ_CHECK(bad->status == 502 && !bad->reason.empty());
    return;
  }
  FUZZ_CHECK(head.result() == http::status::switching_protocols);
  std::string_view accept = head[http::field::sec_websocket_accept];
  while (!accept.empty() && (accept.front() == ' ' || accept.front() == '\t')) accept.remove_prefix(1);
  while (!accept.empty() && (accept.back() == ' ' || accept.back() == '\t')) accept.remove_suffix(1);
  FUZZ_CHECK(accept == computeAccept(upgrade.key));
  if (auto p = head.find(http::field::sec_websocket_protocol); p != head.end()) {
    FUZZ_CHECK(head.count(http::field::sec_websocket_protocol) == 1);
    std::string_view chosen = p->value();
    while (!chosen.empty() && (chosen.front() == ' ' || chosen.front() == '\t')) chosen.remove_prefix(1);
    while (!chosen.empty() && (chosen.back() == ' ' || chosen.back() == '\t')) chosen.remove_suffix(1);
    FUZZ_CHECK(std::find(upgrade.protocols.begin(), upgrade.protocols.end(), chosen) !=
               upgrade.protocols.end());
  }
  if (std::get<UpstreamAgreement>(agreed).permessage_deflate) {
    FUZZ_CHECK(std::any_of(upgrade.extension_names.begin(), upgrade.extension_names.end(),
                           [](const std::string& n) { return iequals(n, "permessage-deflate"); }));
  }
  // The 101 relayed to the client: one complete head with the same status and fields.
  const std::string relayed = headBytes(head);
  http::response_parser<http::empty_body> client;
  client.header_limit(static_cast<uint32_t>(relayed.size()) + 1);
  const size_t used = client.put(asio::buffer(relayed), ec);
  FUZZ_CHECK(!ec && client.is_header_done() && used == relayed.size());
  FUZZ_CHECK(client.get().result() == http::status::switching_protocols);
  FUZZ_CHECK(std::distance(client.get().begin(), client.get().end()) ==
             std::distance(head.begin(), head.end()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  setup();  // the config and router, made once
  const uint8_t flags = data[0];
  const size_t k = std::min<size_t>(flags & 7, size - 1);
  const std::span<const uint8_t> sizes(data + 1, k);
  const std::span<const uint8_t> input(data + 1 + k, size - 1 - k);
  const uint32_t max_request_bytes = (flags & 0x08) ? 1024 : 16 * 1024;
  const uint32_t max_request_headers = (flags & 0x08) ? 8 : 64;

  // 1. Request head, bounded in bytes (Handshake::run and parseHeadNow).
  ChunkedStream client(input, sizes);
  beast::flat_buffer buffer(max_request_bytes);
  RequestParser parser;
  parser.header_limit(max_request_bytes);
  error_code read_ec;
  {
    error_code ec;
    const size_t n = client.read_some(buffer.prepare(std::min(buffer.max_size(), kFirstHeadRead)), ec);
    if (!ec) {
      buffer.commit(n);
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec != http::error::need_more) read_ec = ec;
    }
  }
  if (!read_ec && !parser.is_header_done()) http::read_header(client, buffer, parser, read_ec);
  FUZZ_CHECK(buffer.size() <= max_request_bytes);
  if (read_ec == http::error::header_limit || read_ec == http::error::buffer_overflow) return 0;  // 431
  if (read_ec == http::error::end_of_stream || read_ec == asio::error::eof ||
      read_ec == http::error::partial_message || read_ec == asio::error::connection_reset) {
    return 0;  // the client left
  }
  if (read_ec) return 0;  // 400
  FUZZ_CHECK(parser.is_header_done());
  const RequestHead& request = parser.get().base();
  if (static_cast<size_t>(std::distance(request.begin(), request.end())) > max_request_headers) {
    return 0;  // 431
  }

  // 2. RFC 6455 rules.
  auto validated = validateUpgradeRequest(request);
  if (auto* bad = std::get_if<HttpRejection>(&validated)) {
    checkRejection(*bad);
    return 0;
  }
  const ClientUpgrade& upgrade = std::get<ClientUpgrade>(validated);
  FUZZ_CHECK(request.method() == http::verb::get && request.version() >= 11);
  FUZZ_CHECK(upgrade.key.size() == 24 && upgrade.key.ends_with("=="));
  for (char c : upgrade.key) {
    FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/' || c == '=');
  }
  FUZZ_CHECK(computeAccept(upgrade.key).size() == 28);
  for (const auto& p : upgrade.protocols) {
    FUZZ_CHECK(isTrimmedToken(p) && p.find(',') == std::string::npos);
  }
  for (const auto& e : upgrade.extension_names) {
    FUZZ_CHECK(e.find(',') == std::string::npos && e.find(';') == std::string::npos);
    FUZZ_CHECK(e.empty() || isTrimmedToken(e));
  }
  // RFC 6455 §11.3.1: Sec-WebSocket-Key at most once; RFC 9112 §3.2: exactly one Host.
  FUZZ_CHECK(request.count(http::field::sec_websocket_key) == 1);
  FUZZ_CHECK(request.count(http::field::host) == 1);

  // 3. Route and handshake filters; the request forwarded upstream.
  checkRouteAndOrigin(request);
  checkForwarded(request, upgrade);

  // 4. The rest of the input stands for the backend's answer.
  std::string rest(static_cast<const char*>(buffer.data().data()), buffer.size());
  rest.append(reinterpret_cast<const char*>(client.unread().data()), client.unread().size());
  checkUpstreamAnswer({reinterpret_cast<const uint8_t*>(rest.data()), rest.size()}, sizes, upgrade,
                      (flags & 0x10) != 0);
  return 0;
}
