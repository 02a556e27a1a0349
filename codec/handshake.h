// RFC 6455 opening handshake rules, as pure functions over parsed HTTP heads: validating the
// client's upgrade request (§4.2.1), building the request forwarded upstream, and checking the
// backend's answer (§4.1) before any frame is relayed. No I/O here.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "codec/head_fields.h"

namespace wsgate::gateway {

namespace http = boost::beast::http;

// An HTTP answer to a request the gateway refuses.
struct HttpRejection {
  unsigned status;     // 400, 403, 404, 426, 431, 502, 504...
  std::string reason;  // short, for the body, the log and the metric label's detail
  std::string metric_reason;  // stable label value, e.g. "bad_key", "bad_version"
};

// What the gateway keeps of a valid client upgrade request.
struct ClientUpgrade {
  std::string key;                          // Sec-WebSocket-Key as sent
  std::vector<std::string> protocols;       // offered subprotocols, in order
  std::vector<std::string> extension_names; // offered extension names (params dropped)
};

// Validates the request head. Rejections: method/version/Upgrade/Connection/Host/Key → 400,
// Host, Sec-WebSocket-Key or -Version sent more than once → 400,
// non-websocket upgrade (e.g. h2c) → 400, body (Content-Length > 0 or Transfer-Encoding) → 400,
// Sec-WebSocket-Version other than 13 → 426 (the caller adds `Sec-WebSocket-Version: 13`).
std::variant<ClientUpgrade, HttpRejection> validateUpgradeRequest(const RequestHead& request);

// Builds the upgrade request sent to the backend: hop-by-hop headers (Connection, Keep-Alive,
// Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade and any named in Connection) dropped, then
// `Connection: Upgrade`, `Upgrade: websocket`, `X-Forwarded-For` (appended to an existing one)
// and `X-Forwarded-Proto` set. Sec-WebSocket-* headers and Host pass through unchanged.
// `identity`: a header the gateway alone may set (the verified client certificate): whatever the
// client sent under that name is dropped, and the value is added when there is one.
// `drop_extensions`: Sec-WebSocket-Extensions is not forwarded (a route whose filters read
// payloads keeps messages uncompressed).
struct ForwardedIdentity {
  std::string_view header;  // empty: none
  std::string_view value;   // empty: not added
};
RequestHead makeUpstreamRequest(const RequestHead& client_request, std::string_view client_ip,
                                std::string_view proto, ForwardedIdentity identity = {},
                                bool drop_extensions = false);

// The same request as wire bytes (see http_head.h), built without an intermediate header.
std::string upstreamRequestHead(const RequestHead& client_request, std::string_view client_ip,
                                std::string_view proto, ForwardedIdentity identity = {},
                                bool drop_extensions = false);

// What the backend's 101 agreed to.
struct UpstreamAgreement {
  bool permessage_deflate = false;  // RSV1 allowed on data frames
};

// Checks the backend's answer: 101, `Upgrade: websocket`, `Connection` with `upgrade`, the right
// Sec-WebSocket-Accept, a subprotocol and extensions the client offered. Any failure → a 502
// rejection with the reason.
std::variant<UpstreamAgreement, HttpRejection> validateUpstreamResponse(
    const ResponseHead& response, const ClientUpgrade& client);

// base64(SHA-1(key + RFC 6455 GUID)).
std::string computeAccept(std::string_view key);

// True if comma-separated token list `list` contains `token` (case-insensitive, trimmed).
bool tokenListContains(std::string_view list, std::string_view token);

// Readies a backend's refusal, read whole by Beast's parser, to go back to the client: no
// keep-alive, no Upgrade, and its length, unless a coding other than chunked stays on the body
// (then that coding and no length: the body ends at the close, RFC 9112 §6.2, §6.3).
void prepareRefusalForClient(HttpResponse& response);

// Builds a complete error response (status line, `Connection: close`, text body of `reason`).
HttpResponse makeErrorResponse(unsigned status, std::string_view reason,
                               unsigned http_version = 11);

}  // namespace wsgate::gateway
