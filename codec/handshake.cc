// SHA1_Init and its siblings are deprecated in OpenSSL 3 in favour of EVP, which allocates a
// context per digest; they remain, and this file asks for the 1.1.1 interface to use them.
#define OPENSSL_API_COMPAT 10101

#include "codec/handshake.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "codec/http_head.h"

namespace wsgate::gateway {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// ASCII case folding (HTTP tokens are ASCII), without a locale lookup per character.
bool iequals(std::string_view a, std::string_view b) { return boost::beast::iequals(a, b); }

// Calls `visit(token)` for each comma-separated, trimmed, non-empty element.
template <typename Visit>
void forEachToken(std::string_view list, Visit&& visit) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view token = trim(list.substr(0, comma));
    if (!token.empty()) visit(token);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// Tokens of every `field` line of `fields`, in order. A list may be split over several lines
// anywhere in the head, so every line is looked at: a lookup by name would find the first line
// and walk on only through the lines that follow it directly.
template <typename Fields, typename Visit>
void forEachHeaderToken(const Fields& fields, http::field field, Visit&& visit) {
  for (const auto& line : fields) {
    if (line.name() == field) forEachToken(line.value(), visit);
  }
}

std::string_view extensionName(std::string_view extension) {
  return trim(extension.substr(0, extension.find(';')));
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool isBase64Key(std::string_view key) {
  // 16 bytes encode to exactly 24 characters ending in "==".
  if (key.size() != 24 || key.substr(22) != "==") return false;
  for (size_t i = 0; i < 22; ++i) {
    const char c = key[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  // The last data character carries only 2 significant bits: the rest must be zero.
  static constexpr std::string_view kLastChars = "AQgw";
  return kLastChars.find(key[21]) != std::string_view::npos;
}

HttpRejection bad(unsigned status, std::string reason, std::string metric) {
  return {status, std::move(reason), std::move(metric)};
}

}  // namespace

void prepareRefusalForClient(HttpResponse& response) {
  response.keep_alive(false);
  response.erase(http::field::upgrade);
  std::string codings;  // the parser took the chunked coding off the body, not the others
  forEachHeaderToken(response, http::field::transfer_encoding, [&](std::string_view coding) {
    if (iequals(coding, "chunked")) return;
    if (!codings.empty()) codings += ", ";
    codings += coding;
  });
  response.erase(http::field::transfer_encoding);
  if (codings.empty()) {
    response.prepare_payload();
  } else {
    response.erase(http::field::content_length);
    response.set(http::field::transfer_encoding, codings);
  }
}

bool tokenListContains(std::string_view list, std::string_view token) {
  bool found = false;
  forEachToken(list, [&](std::string_view t) { found = found || iequals(t, token); });
  return found;
}

namespace {

// What validation needs of a request head, gathered in one pass over its fields: a lookup by
// name walks Beast's tree of fields with a case-insensitive compare, a dozen of them per head.
struct RequestFacts {
  std::string_view host, key, version;  // first line of each
  size_t hosts = 0, keys = 0, versions = 0;
  bool body = false;                // Transfer-Encoding, or a Content-Length other than zero
  bool upgrade = false;             // any Upgrade line
  bool upgrade_websocket = false;   // an Upgrade line listing websocket
  bool connection_upgrade = false;  // a Connection line listing upgrade
};

// Anything but a zero length ("0", "00") means bytes that would be mistaken for frames.
bool isZeroLength(std::string_view length) {
  length = trim(length);
  return !length.empty() && length.find_first_not_of('0') == std::string_view::npos;
}

RequestFacts gatherRequestFacts(const RequestHead& request, ClientUpgrade& offers) {
  RequestFacts facts;
  for (const auto& line : request) {
    const std::string_view value = line.value();
    switch (line.name()) {
      case http::field::host:
        if (facts.hosts++ == 0) facts.host = value;
        break;
      case http::field::sec_websocket_key:
        if (facts.keys++ == 0) facts.key = value;
        break;
      case http::field::sec_websocket_version:
        if (facts.versions++ == 0) facts.version = value;
        break;
      case http::field::content_length:
        facts.body = facts.body || !isZeroLength(value);
        break;
      case http::field::transfer_encoding:
        facts.body = true;
        break;
      case http::field::upgrade:
        facts.upgrade = true;
        facts.upgrade_websocket = facts.upgrade_websocket || tokenListContains(value, "websocket");
        break;
      case http::field::connection:
        facts.connection_upgrade = facts.connection_upgrade || tokenListContains(value, "upgrade");
        break;
      case http::field::sec_websocket_protocol:
        forEachToken(value, [&](std::string_view t) { offers.protocols.emplace_back(t); });
        break;
      case http::field::sec_websocket_extensions:
        forEachToken(value, [&](std::string_view t) {
          offers.extension_names.emplace_back(extensionName(t));
        });
        break;
      default:
        break;
    }
  }
  return facts;
}

}  // namespace

std::variant<ClientUpgrade, HttpRejection> validateUpgradeRequest(const RequestHead& request) {
  if (request.method() != http::verb::get) {
    return bad(400, "the WebSocket handshake must be a GET", "bad_method");
  }
  if (request.version() < 11) {
    return bad(400, "the WebSocket handshake needs HTTP/1.1", "bad_http_version");
  }
  ClientUpgrade upgrade_request;
  const RequestFacts facts = gatherRequestFacts(request, upgrade_request);
  if (facts.hosts == 0 || trim(facts.host).empty()) {
    return bad(400, "missing Host header", "missing_host");
  }
  // Two values would let the router or a filter read one and the backend act on the other.
  for (const auto& [field, count] : {std::pair{http::field::host, facts.hosts},
                                     std::pair{http::field::sec_websocket_key, facts.keys},
                                     std::pair{http::field::sec_websocket_version, facts.versions}}) {
    if (count > 1) {
      return bad(400, "repeated " + std::string(http::to_string(field)) + " header",
                 "repeated_header");
    }
  }
  if (facts.body) return bad(400, "an upgrade request cannot carry a body", "has_body");
  if (!facts.upgrade) return bad(400, "missing Upgrade: websocket", "missing_upgrade");
  if (!facts.upgrade_websocket) {
    return bad(400, "only Upgrade: websocket is supported", "unsupported_upgrade");
  }
  if (!facts.connection_upgrade) {
    return bad(400, "Connection header must include upgrade", "bad_connection");
  }
  if (facts.keys == 0 || !isBase64Key(trim(facts.key))) {
    return bad(400, "missing or invalid Sec-WebSocket-Key", "bad_key");
  }
  if (facts.versions == 0 || trim(facts.version) != "13") {
    return bad(426, "unsupported Sec-WebSocket-Version (13 is supported)",
               "unsupported_ws_version");
  }
  upgrade_request.key = trim(facts.key);
  return upgrade_request;
}

namespace {

// Calls `visit(name, value)` for every field of the request forwarded upstream, in order.
template <typename Visit>
void forEachForwardedField(const RequestHead& client_request,
                           std::string_view client_ip, std::string_view proto,
                           ForwardedIdentity identity, bool drop_extensions, Visit&& visit) {
  // Hop-by-hop: RFC 9110 §7.6.1, plus whatever the client's Connection header names.
  static constexpr std::array<std::string_view, 6> kHopByHop = {
      "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"};
  std::array<std::string_view, 16> named_storage;
  size_t named_count = 0;
  bool named_overflow = false;
  forEachHeaderToken(client_request, http::field::connection, [&](std::string_view t) {
    if (named_count < named_storage.size()) {
      named_storage[named_count++] = t;
    } else {
      named_overflow = true;
    }
  });
  auto named = [&](std::string_view name) {
    for (size_t i = 0; i < named_count; ++i) {
      if (iequals(name, named_storage[i])) return true;
    }
    if (!named_overflow) return false;
    // More than 16 tokens: look through the header again rather than keep them all.
    bool found = false;
    forEachHeaderToken(client_request, http::field::connection,
                       [&](std::string_view t) { found = found || iequals(name, t); });
    return found;
  };
  auto dropped = [&](std::string_view name) {
    for (std::string_view h : kHopByHop) {
      if (iequals(name, h)) return true;
    }
    // Proxy-Authorization and friends are meant for this hop: never leak credentials onwards.
    if (startsWithIgnoreCase(name, "proxy-")) return true;
    if (iequals(name, "x-forwarded-proto")) return true;  // set below, never trusted from clients
    if (!identity.header.empty() && iequals(name, identity.header)) return true;  // likewise
    if (drop_extensions && iequals(name, "sec-websocket-extensions")) return true;
    // The backend cannot complete the handshake without Host and Sec-WebSocket-*, so a client
    // naming them in Connection must not be able to strip them.
    if (iequals(name, "host") || startsWithIgnoreCase(name, "sec-websocket-")) return false;
    return named(name);
  };
  std::string forwarded_for;
  for (const auto& field : client_request) {
    const std::string_view name = field.name_string();
    if (dropped(name)) continue;
    if (iequals(name, "x-forwarded-for")) {
      const std::string_view value = trim(field.value());
      if (!value.empty()) forwarded_for.append(forwarded_for.empty() ? "" : ", ").append(value);
      continue;
    }
    visit(name, field.value());
  }
  forwarded_for.append(forwarded_for.empty() ? "" : ", ").append(client_ip);
  visit("Connection", "Upgrade");
  visit("Upgrade", "websocket");
  visit("X-Forwarded-For", forwarded_for);
  visit("X-Forwarded-Proto", proto);
  if (!identity.header.empty() && !identity.value.empty()) visit(identity.header, identity.value);
}

}  // namespace

RequestHead makeUpstreamRequest(const RequestHead& client_request, std::string_view client_ip,
                                std::string_view proto, ForwardedIdentity identity,
                                bool drop_extensions) {
  RequestHead out;
  out.method(client_request.method());
  out.target(client_request.target());
  out.version(11);
  forEachForwardedField(client_request, client_ip, proto, identity, drop_extensions,
                        [&](std::string_view name, std::string_view value) {
                          out.insert(name, value);
                        });
  return out;
}

std::string upstreamRequestHead(const RequestHead& client_request, std::string_view client_ip,
                                std::string_view proto, ForwardedIdentity identity,
                                bool drop_extensions) {
  HeadWriter head;
  head.requestLine(client_request.method_string(), client_request.target(), 11);
  forEachForwardedField(client_request, client_ip, proto, identity, drop_extensions,
                        [&](std::string_view name, std::string_view value) {
                          head.field(name, value);
                        });
  return head.finish();
}

namespace {

constexpr size_t kAcceptSize = 28;  // base64 of a 20-byte SHA-1

// Writes the accept value for `key` into `out` (NUL-terminated). OpenSSL's SHA-1 functions work
// on a context on the stack; its EVP interface allocated and freed one per handshake, and
// Beast's portable SHA-1 takes twice their time.
bool writeAccept(std::string_view key, std::array<char, kAcceptSize + 1>& out) {
  SHA_CTX context;
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest;
  const bool ok = SHA1_Init(&context) == 1 && SHA1_Update(&context, key.data(), key.size()) == 1 &&
                  SHA1_Update(&context, kGuid.data(), kGuid.size()) == 1 &&
                  SHA1_Final(digest.data(), &context) == 1;
  if (!ok) return false;
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest.data(), digest.size());
  return true;
}

}  // namespace

std::variant<UpstreamAgreement, HttpRejection> validateUpstreamResponse(
    const ResponseHead& response, const ClientUpgrade& client) {
  constexpr std::string_view kMetric = "upstream_bad_handshake";
  if (response.result() != http::status::switching_protocols) {
    return bad(502, "upstream did not switch protocols", std::string(kMetric));
  }
  // One pass over the fields, as for the request.
  bool upgrade_websocket = false;
  bool connection_upgrade = false;
  std::string_view accept;
  size_t accepts = 0;
  std::string_view protocol;
  size_t protocols = 0;
  UpstreamAgreement agreement;
  bool unoffered_extension = false;
  for (const auto& line : response) {
    const std::string_view value = line.value();
    switch (line.name()) {
      case http::field::upgrade:
        upgrade_websocket = upgrade_websocket || tokenListContains(value, "websocket");
        break;
      case http::field::connection:
        connection_upgrade = connection_upgrade || tokenListContains(value, "upgrade");
        break;
      case http::field::sec_websocket_accept:
        if (accepts++ == 0) accept = trim(value);
        break;
      case http::field::sec_websocket_protocol:
        if (protocols++ == 0) protocol = trim(value);
        break;
      case http::field::sec_websocket_extensions:
        forEachToken(value, [&](std::string_view extension) {
          const std::string_view name = extensionName(extension);
          unoffered_extension =
              unoffered_extension ||
              std::none_of(client.extension_names.begin(), client.extension_names.end(),
                           [&](const std::string& n) { return iequals(n, name); });
          if (iequals(name, "permessage-deflate")) agreement.permessage_deflate = true;
        });
        break;
      default:
        break;
    }
  }
  if (!upgrade_websocket) {
    return bad(502, "upstream 101 without Upgrade: websocket", std::string(kMetric));
  }
  if (!connection_upgrade) {
    return bad(502, "upstream 101 without Connection: upgrade", std::string(kMetric));
  }
  std::array<char, kAcceptSize + 1> expected;
  if (!writeAccept(client.key, expected) ||
      accept != std::string_view(expected.data(), kAcceptSize)) {
    return bad(502, "upstream sent a wrong Sec-WebSocket-Accept", std::string(kMetric));
  }
  if (protocols > 0) {
    // Exactly one value: a second header line or a list would leave the two sides disagreeing
    // on which protocol is spoken. A list never equals an offered token (they hold no comma).
    if (protocols > 1) {
      return bad(502, "upstream selected more than one subprotocol", std::string(kMetric));
    }
    if (std::find(client.protocols.begin(), client.protocols.end(), protocol) ==
        client.protocols.end()) {
      return bad(502, "upstream selected a subprotocol the client did not offer",
                 std::string(kMetric));
    }
  }
  if (unoffered_extension) {
    return bad(502, "upstream selected an extension the client did not offer",
               std::string(kMetric));
  }
  return agreement;
}

std::string computeAccept(std::string_view key) {
  std::array<char, kAcceptSize + 1> accept;
  // Empty never equals a real accept value: the handshake fails closed.
  return writeAccept(key, accept) ? std::string(accept.data(), kAcceptSize) : std::string();
}

HttpResponse makeErrorResponse(unsigned status, std::string_view reason, unsigned http_version) {
  HttpResponse response(static_cast<http::status>(status), http_version);
  response.set(http::field::server, "wsgate");
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  // Explicit even for HTTP/1.0, where keep_alive(false) would send no Connection header at all.
  response.set(http::field::connection, "close");
  response.body() = std::string(reason) + "\n";
  response.prepare_payload();
  return response;
}

}  // namespace wsgate::gateway
