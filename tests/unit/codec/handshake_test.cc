#include "codec/handshake.h"

#include <cctype>
#include <functional>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <gtest/gtest.h>

#include "codec/http_head.h"

namespace wsgate::gateway {
namespace {

RequestHead validRequest() {
  RequestHead r;
  r.method(http::verb::get);
  r.target("/chat");
  r.version(11);
  r.set(http::field::host, "chat.example.com");
  r.set(http::field::upgrade, "websocket");
  r.set(http::field::connection, "Upgrade");
  r.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  r.set(http::field::sec_websocket_version, "13");
  return r;
}

HttpRejection rejection(const RequestHead& r) {
  auto result = validateUpgradeRequest(r);
  EXPECT_TRUE(std::holds_alternative<HttpRejection>(result));
  return std::holds_alternative<HttpRejection>(result) ? std::get<HttpRejection>(result)
                                                       : HttpRejection{0, "", ""};
}

// The upgrade `r` is accepted as; a failure names the rejection's reason.
ClientUpgrade accepted(const RequestHead& r) {
  auto result = validateUpgradeRequest(r);
  if (auto* bad = std::get_if<HttpRejection>(&result)) {
    ADD_FAILURE() << "rejected: " << bad->reason;
    return {};
  }
  return std::get<ClientUpgrade>(std::move(result));
}

TEST(ValidateUpgradeRequest, AcceptsValidRequest) {
  auto result = validateUpgradeRequest(validRequest());
  ASSERT_TRUE(std::holds_alternative<ClientUpgrade>(result));
  EXPECT_EQ(std::get<ClientUpgrade>(result).key, "dGhlIHNhbXBsZSBub25jZQ==");
}

TEST(ValidateUpgradeRequest, AcceptsTokenListsAndAnyCase) {
  auto r = validRequest();
  r.set(http::field::connection, "keep-alive, Upgrade");
  r.set(http::field::upgrade, "WebSocket");
  EXPECT_TRUE(std::holds_alternative<ClientUpgrade>(validateUpgradeRequest(r)));
  r.set(http::field::connection, "UPGRADE");
  EXPECT_TRUE(std::holds_alternative<ClientUpgrade>(validateUpgradeRequest(r)));
}

TEST(ValidateUpgradeRequest, RejectsEachMissingOrInvalidPiece) {
  struct Case {
    std::function<void(RequestHead&)> change;
    unsigned status;
    std::string metric;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.method(http::verb::post); }, 400, "bad_method"},
      {[](auto& r) { r.version(10); }, 400, "bad_http_version"},
      {[](auto& r) { r.erase(http::field::host); }, 400, "missing_host"},
      {[](auto& r) { r.insert(http::field::host, "other.example"); }, 400, "repeated_header"},
      {[](auto& r) { r.insert(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ=="); }, 400,
       "repeated_header"},
      {[](auto& r) { r.insert(http::field::sec_websocket_version, "13"); }, 400,
       "repeated_header"},
      {[](auto& r) { r.erase(http::field::upgrade); }, 400, "missing_upgrade"},
      {[](auto& r) { r.set(http::field::upgrade, "h2c"); }, 400, "unsupported_upgrade"},
      {[](auto& r) { r.set(http::field::connection, "keep-alive"); }, 400, "bad_connection"},
      {[](auto& r) { r.erase(http::field::connection); }, 400, "bad_connection"},
      {[](auto& r) { r.erase(http::field::sec_websocket_key); }, 400, "bad_key"},
      // 15 and 17 bytes, and not base64.
      {[](auto& r) { r.set(http::field::sec_websocket_key, "YWJjZGVmZ2hpamtsbW5v"); }, 400,
       "bad_key"},
      {[](auto& r) { r.set(http::field::sec_websocket_key, "YWJjZGVmZ2hpamtsbW5vcHE="); }, 400,
       "bad_key"},
      {[](auto& r) { r.set(http::field::sec_websocket_key, "!!!!!!!!!!!!!!!!!!!!!!=="); }, 400,
       "bad_key"},
      {[](auto& r) { r.set(http::field::content_length, "5"); }, 400, "has_body"},
      {[](auto& r) { r.set(http::field::transfer_encoding, "chunked"); }, 400, "has_body"},
      {[](auto& r) { r.set(http::field::sec_websocket_version, "12"); }, 426,
       "unsupported_ws_version"},
      {[](auto& r) { r.erase(http::field::sec_websocket_version); }, 426,
       "unsupported_ws_version"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto r = validRequest();
    cases[i].change(r);
    HttpRejection got = rejection(r);
    EXPECT_EQ(got.status, cases[i].status) << "case " << i;
    EXPECT_EQ(got.metric_reason, cases[i].metric) << "case " << i;
    EXPECT_FALSE(got.reason.empty());
  }
}

TEST(ValidateUpgradeRequest, AcceptsZeroContentLength) {
  auto r = validRequest();
  r.set(http::field::content_length, "0");
  EXPECT_TRUE(std::holds_alternative<ClientUpgrade>(validateUpgradeRequest(r)));
  r.set(http::field::content_length, "00");
  EXPECT_TRUE(std::holds_alternative<ClientUpgrade>(validateUpgradeRequest(r)));
}

// As the gateway sees it: a head parsed off the wire, header names in any case.
RequestHead parse(std::string_view raw) {
  RequestParser parser;
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(parser.is_header_done());
  return parser.get().base();
}

TEST(ValidateUpgradeRequest, AcceptsParsedRequestWithMixedCaseNamesAndTokens) {
  auto r = parse(
      "GET /chat?room=1 HTTP/1.1\r\n"
      "hOST: chat.example.com:8443\r\n"
      "UPGRADE: WebSocket\r\n"
      "connection: keep-alive, Upgrade\r\n"
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "SEC-WEBSOCKET-VERSION: 13\r\n"
      "Sec-Websocket-Protocol: chat.v1\r\n"
      "\r\n");
  EXPECT_EQ(accepted(r).protocols, std::vector<std::string>{"chat.v1"});
}

TEST(ValidateUpgradeRequest, FindsTokensSplitOverSeveralHeaderLines) {
  auto r = validRequest();
  r.set(http::field::upgrade, "foo/1");
  r.insert(http::field::upgrade, "websocket");
  r.set(http::field::connection, "keep-alive");
  r.insert(http::field::connection, "upgrade");
  EXPECT_TRUE(std::holds_alternative<ClientUpgrade>(validateUpgradeRequest(r)));
}

// RFC 9110 §5.3: lines of one list field need not be next to each other.
TEST(ValidateUpgradeRequest, FindsTokensOnLinesWithOtherFieldsBetween) {
  auto r = parse(
      "GET /chat HTTP/1.1\r\n"
      "Host: chat.example.com\r\n"
      "Connection: keep-alive\r\n"
      "Upgrade: foo/1\r\n"
      "Sec-WebSocket-Protocol: chat.v2\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "Upgrade: websocket\r\n"
      "Sec-WebSocket-Protocol: chat.v1\r\n"
      "\r\n");
  EXPECT_EQ(accepted(r).protocols, (std::vector<std::string>{"chat.v2", "chat.v1"}));
}

TEST(ValidateUpgradeRequest, CountsRepeatedFieldsWhereverTheyAre) {
  auto r = validRequest();
  r.insert("X-Between", "1");
  r.insert(http::field::sec_websocket_version, "13");
  EXPECT_EQ(rejection(r).reason, "repeated Sec-WebSocket-Version header");
  r = validRequest();
  r.insert(http::field::content_length, "0");
  r.insert("X-Between", "1");
  r.insert(http::field::content_length, "7");
  EXPECT_EQ(rejection(r).metric_reason, "has_body");
}

TEST(ValidateUpgradeRequest, RejectsEmptyHost) {
  auto r = validRequest();
  r.set(http::field::host, "");
  EXPECT_EQ(rejection(r).metric_reason, "missing_host");
}

TEST(ValidateUpgradeRequest, RejectsKeyThatIsNotCanonicalBase64) {
  auto r = validRequest();
  // 16 bytes only if the decoder ignores the nonzero padding bits; clients never send this.
  r.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZR==");
  const HttpRejection got = rejection(r);
  EXPECT_EQ(got.status, 400u);
  EXPECT_EQ(got.reason, "missing or invalid Sec-WebSocket-Key");
  EXPECT_EQ(got.metric_reason, "bad_key");
  r.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ");  // padding left off
  EXPECT_EQ(rejection(r).metric_reason, "bad_key");
}

TEST(ValidateUpgradeRequest, OffersNothingWhenNoProtocolOrExtensionHeader) {
  auto upgrade = std::get<ClientUpgrade>(validateUpgradeRequest(validRequest()));
  EXPECT_TRUE(upgrade.protocols.empty());
  EXPECT_TRUE(upgrade.extension_names.empty());
}

TEST(ValidateUpgradeRequest, ParsesOfferedProtocolsAndExtensionNames) {
  auto r = validRequest();
  r.insert(http::field::sec_websocket_protocol, "chat.v2, chat.v1");
  r.insert(http::field::sec_websocket_protocol, "legacy");
  r.set(http::field::sec_websocket_extensions,
        "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame");
  auto upgrade = std::get<ClientUpgrade>(validateUpgradeRequest(r));
  EXPECT_EQ(upgrade.protocols, (std::vector<std::string>{"chat.v2", "chat.v1", "legacy"}));
  EXPECT_EQ(upgrade.extension_names,
            (std::vector<std::string>{"permessage-deflate", "x-webkit-deflate-frame"}));
}

TEST(ComputeAccept, MatchesRfc6455Example) {
  EXPECT_EQ(computeAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(MakeUpstreamRequest, DropsHopByHopAndAddsForwardedHeaders) {
  auto r = validRequest();
  r.set(http::field::connection, "keep-alive, Upgrade, X-Private");
  r.set("X-Private", "secret");
  r.set(http::field::keep_alive, "timeout=5");
  r.set(http::field::te, "trailers");
  r.set("X-Forwarded-For", "203.0.113.7");
  r.set("X-Forwarded-Proto", "https");
  r.set(http::field::origin, "https://chat.example.com");
  r.set(http::field::sec_websocket_protocol, "chat.v1");
  auto out = makeUpstreamRequest(r, "10.1.2.3", "http");
  EXPECT_EQ(out.method(), http::verb::get);
  EXPECT_EQ(out.target(), "/chat");
  EXPECT_EQ(out[http::field::connection], "Upgrade");
  EXPECT_EQ(out[http::field::upgrade], "websocket");
  EXPECT_EQ(out.count("X-Private"), 0u);
  EXPECT_EQ(out.count(http::field::keep_alive), 0u);
  EXPECT_EQ(out.count(http::field::te), 0u);
  EXPECT_EQ(out["X-Forwarded-For"], "203.0.113.7, 10.1.2.3");
  EXPECT_EQ(out["X-Forwarded-Proto"], "http");
  EXPECT_EQ(out[http::field::host], "chat.example.com");
  EXPECT_EQ(out[http::field::origin], "https://chat.example.com");
  EXPECT_EQ(out[http::field::sec_websocket_key], "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(out[http::field::sec_websocket_protocol], "chat.v1");
}

TEST(MakeUpstreamRequest, AddsForwardedForWhenAbsent) {
  auto out = makeUpstreamRequest(validRequest(), "::1", "https");
  EXPECT_EQ(out["X-Forwarded-For"], "::1");
  EXPECT_EQ(out["X-Forwarded-Proto"], "https");
  EXPECT_EQ(out.version(), 11u);
}

TEST(MakeUpstreamRequest, JoinsEveryForwardedForLineAndSkipsEmptyOnes) {
  auto r = validRequest();
  r.insert("X-Forwarded-For", "203.0.113.7, 198.51.100.1");
  r.insert("x-forwarded-for", "");
  r.insert("X-Forwarded-For", "192.0.2.9");
  auto out = makeUpstreamRequest(r, "10.1.2.3", "http");
  EXPECT_EQ(out.count("X-Forwarded-For"), 1u);
  EXPECT_EQ(out["X-Forwarded-For"], "203.0.113.7, 198.51.100.1, 192.0.2.9, 10.1.2.3");
}

TEST(MakeUpstreamRequest, DropsProxyHeadersAndTrailersButKeepsHandshakeFields) {
  auto r = validRequest();
  // A client naming Host or Sec-WebSocket-Key in Connection cannot break the backend handshake.
  r.set(http::field::connection, "Upgrade, Host, Sec-WebSocket-Key");
  r.set(http::field::proxy_authorization, "Basic c2VjcmV0");
  r.set("Proxy-Connection", "keep-alive");
  r.set("Proxy-Anything", "x");
  r.set(http::field::trailer, "X-Checksum");
  r.set(http::field::upgrade, "websocket, h2c");
  r.insert("X-Forwarded-Proto", "https");
  r.insert("X-Forwarded-Proto", "wss");
  auto out = makeUpstreamRequest(r, "10.1.2.3", "http");
  EXPECT_EQ(out.count(http::field::proxy_authorization), 0u);
  EXPECT_EQ(out.count("Proxy-Connection"), 0u);
  EXPECT_EQ(out.count("Proxy-Anything"), 0u);
  EXPECT_EQ(out.count(http::field::trailer), 0u);
  EXPECT_EQ(out[http::field::upgrade], "websocket");
  EXPECT_EQ(out.count("X-Forwarded-Proto"), 1u);
  EXPECT_EQ(out["X-Forwarded-Proto"], "http");
  EXPECT_EQ(out[http::field::host], "chat.example.com");
  EXPECT_EQ(out[http::field::sec_websocket_key], "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(out[http::field::sec_websocket_version], "13");
}

class UpstreamResponse : public ::testing::Test {
 protected:
  ResponseHead good() {
    ResponseHead r;
    r.result(http::status::switching_protocols);
    r.version(11);
    r.set(http::field::upgrade, "websocket");
    r.set(http::field::connection, "Upgrade");
    r.set(http::field::sec_websocket_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    return r;
  }
  ClientUpgrade client{"dGhlIHNhbXBsZSBub25jZQ==", {"chat.v1"}, {"permessage-deflate"}};

  std::string failure(const ResponseHead& r) {
    auto result = validateUpstreamResponse(r, client);
    if (!std::holds_alternative<HttpRejection>(result)) return "(accepted)";
    EXPECT_EQ(std::get<HttpRejection>(result).status, 502u);
    return std::get<HttpRejection>(result).reason;
  }
};

TEST_F(UpstreamResponse, AcceptsCorrect101) {
  auto result = validateUpstreamResponse(good(), client);
  ASSERT_TRUE(std::holds_alternative<UpstreamAgreement>(result));
  EXPECT_FALSE(std::get<UpstreamAgreement>(result).permessage_deflate);
}

TEST_F(UpstreamResponse, NotesAcceptedDeflateAndOfferedSubprotocol) {
  auto r = good();
  r.set(http::field::sec_websocket_extensions, "permessage-deflate; server_no_context_takeover");
  r.set(http::field::sec_websocket_protocol, "chat.v1");
  auto result = validateUpstreamResponse(r, client);
  ASSERT_TRUE(std::holds_alternative<UpstreamAgreement>(result));
  EXPECT_TRUE(std::get<UpstreamAgreement>(result).permessage_deflate);
}

TEST_F(UpstreamResponse, RejectsEachBadAnswer) {
  auto r = good();
  r.set(http::field::sec_websocket_accept, "d3Jvbmc=");
  EXPECT_EQ(failure(r), "upstream sent a wrong Sec-WebSocket-Accept");
  r = good();
  r.erase(http::field::upgrade);
  EXPECT_EQ(failure(r), "upstream 101 without Upgrade: websocket");
  r = good();
  r.set(http::field::connection, "close");
  EXPECT_EQ(failure(r), "upstream 101 without Connection: upgrade");
  r = good();
  r.set(http::field::sec_websocket_protocol, "chat.v9");
  EXPECT_EQ(failure(r), "upstream selected a subprotocol the client did not offer");
  r = good();
  r.set(http::field::sec_websocket_extensions, "x-unknown");
  EXPECT_EQ(failure(r), "upstream selected an extension the client did not offer");
  r = good();
  r.result(http::status::ok);
  EXPECT_EQ(failure(r), "upstream did not switch protocols");
}

TEST_F(UpstreamResponse, FailuresCountAsUpstreamBadHandshake) {
  auto r = good();
  r.erase(http::field::sec_websocket_accept);
  auto result = validateUpstreamResponse(r, client);
  ASSERT_TRUE(std::holds_alternative<HttpRejection>(result));
  EXPECT_EQ(std::get<HttpRejection>(result).status, 502u);
  EXPECT_EQ(std::get<HttpRejection>(result).metric_reason, "upstream_bad_handshake");
}

TEST_F(UpstreamResponse, RejectsMoreThanOneSubprotocol) {
  client.protocols = {"chat.v1", "chat.v2"};
  auto r = good();
  r.set(http::field::sec_websocket_protocol, "chat.v1, chat.v2");
  EXPECT_EQ(failure(r), "upstream selected a subprotocol the client did not offer");
  r.set(http::field::sec_websocket_protocol, "chat.v1");
  r.insert(http::field::sec_websocket_protocol, "chat.v2");
  EXPECT_EQ(failure(r), "upstream selected more than one subprotocol");
}

TEST_F(UpstreamResponse, RejectsSubprotocolWhenClientOfferedNone) {
  client.protocols.clear();
  auto r = good();
  r.set(http::field::sec_websocket_protocol, "chat.v1");
  EXPECT_EQ(failure(r), "upstream selected a subprotocol the client did not offer");
}

TEST_F(UpstreamResponse, RejectsDeflateTheClientDidNotOffer) {
  client.extension_names.clear();
  auto r = good();
  r.set(http::field::sec_websocket_extensions, "permessage-deflate");
  EXPECT_EQ(failure(r), "upstream selected an extension the client did not offer");
}

TEST_F(UpstreamResponse, FindsTokensOnLinesWithOtherFieldsBetween) {
  auto r = good();
  r.set(http::field::connection, "keep-alive");
  r.insert(http::field::server, "backend");
  r.insert(http::field::connection, "upgrade");
  r.insert(http::field::sec_websocket_extensions, "permessage-deflate");
  r.insert(http::field::date, "Thu, 03 Dec 2026 10:00:00 GMT");
  r.insert(http::field::sec_websocket_extensions, "x-unknown");
  EXPECT_EQ(failure(r), "upstream selected an extension the client did not offer");
}

TEST_F(UpstreamResponse, AcceptsMixedCaseTokensAndHeadersSplitOverLines) {
  auto r = good();
  r.set(http::field::upgrade, "WebSocket");
  r.set(http::field::connection, "keep-alive");
  r.insert(http::field::connection, "UPGRADE");
  r.set(http::field::sec_websocket_extensions, "Permessage-Deflate");
  auto result = validateUpstreamResponse(r, client);
  ASSERT_TRUE(std::holds_alternative<UpstreamAgreement>(result))
      << std::get<HttpRejection>(result).reason;
  EXPECT_TRUE(std::get<UpstreamAgreement>(result).permessage_deflate);
}

TEST(TokenList, FindsTokensCaseInsensitivelyAndTrimmed) {
  EXPECT_TRUE(tokenListContains("keep-alive,  Upgrade ", "upgrade"));
  EXPECT_FALSE(tokenListContains("keep-alive, upgraded", "upgrade"));
  EXPECT_FALSE(tokenListContains("", "upgrade"));
}

TEST(ErrorResponse, IsCompleteWithConnectionClose) {
  auto r = makeErrorResponse(404, "no route");
  EXPECT_EQ(r.result_int(), 404u);
  EXPECT_EQ(r.version(), 11u);
  EXPECT_EQ(r[http::field::connection], "close");
  EXPECT_EQ(r[http::field::server], "wsgate");
  EXPECT_EQ(r[http::field::content_type].substr(0, 10), "text/plain");
  EXPECT_EQ(r.body(), "no route\n");
  EXPECT_EQ(r[http::field::content_length], "9");
}

TEST(ErrorResponse, SaysConnectionCloseToHttp10ClientsToo) {
  auto r = makeErrorResponse(400, "bad", 10);
  EXPECT_EQ(r.version(), 10u);
  EXPECT_EQ(r[http::field::connection], "close");
}

}  // namespace
}  // namespace wsgate::gateway

namespace wsgate::gateway {
namespace {

TEST(UpstreamRequestHead, IsTheForwardedRequestAsWireBytes) {
  auto r = validRequest();
  r.set(http::field::connection, "keep-alive, Upgrade, X-Private");
  r.set("X-Private", "secret");
  r.set("X-Forwarded-For", "203.0.113.7");
  r.set(http::field::origin, "https://chat.example.com");
  const std::string head = upstreamRequestHead(r, "10.1.2.3", "http");
  EXPECT_EQ(head, headBytes(makeUpstreamRequest(r, "10.1.2.3", "http")));
  EXPECT_TRUE(head.starts_with("GET /chat HTTP/1.1\r\n"));
  EXPECT_EQ(head.find("X-Private"), std::string::npos);
  EXPECT_NE(head.find("\r\nX-Forwarded-For: 203.0.113.7, 10.1.2.3\r\n"), std::string::npos);
  EXPECT_TRUE(head.ends_with("X-Forwarded-Proto: http\r\n\r\n"));
}

TEST(UpstreamRequestHead, DropsWhatAnyConnectionLineNames) {
  auto r = parse(
      "GET /chat HTTP/1.1\r\n"
      "Host: chat.example.com\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: websocket\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Connection: X-Private\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "X-Private: secret\r\n"
      "\r\n");
  const std::string head = upstreamRequestHead(r, "10.1.2.3", "http");
  EXPECT_EQ(head.find("X-Private"), std::string::npos) << head;
  EXPECT_EQ(head, headBytes(makeUpstreamRequest(r, "10.1.2.3", "http")));
}

TEST(UpstreamRequestHead, HonoursEveryTokenOfALongConnectionHeader) {
  auto r = validRequest();
  std::string connection = "Upgrade";
  for (int i = 0; i < 20; ++i) connection += ", X-Hop-" + std::to_string(i);
  r.set(http::field::connection, connection);
  for (int i = 0; i < 20; ++i) r.set("X-Hop-" + std::to_string(i), "v");
  r.set("X-Kept", "yes");
  const std::string head = upstreamRequestHead(r, "10.1.2.3", "http");
  EXPECT_EQ(head.find("X-Hop-"), std::string::npos) << "token 17 and later are dropped too";
  EXPECT_NE(head.find("X-Kept: yes"), std::string::npos);
  EXPECT_EQ(head, headBytes(makeUpstreamRequest(r, "10.1.2.3", "http")));
}

// The client's request with its own claims under the identity header's name, in two cases.
RequestHead forgedIdentity() {
  return parse(
      "GET /chat HTTP/1.1\r\n"
      "Host: chat.example.com\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: websocket\r\n"
      "x-client-identity: CN=forged-1\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "X-CLIENT-IDENTITY: CN=forged-2\r\n"
      "\r\n");
}

std::string lowered(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

TEST(ForwardedIdentity, ReplacesWhatTheClientSentUnderItsNameInAnyCase) {
  const auto r = forgedIdentity();
  const ForwardedIdentity identity{"X-Client-Identity", "CN=alice; DNS:alice.example"};
  const auto out = makeUpstreamRequest(r, "10.1.2.3", "https", identity);
  EXPECT_EQ(out.count("X-Client-Identity"), 1u);
  EXPECT_EQ(out["X-Client-Identity"], "CN=alice; DNS:alice.example");
  const std::string head = upstreamRequestHead(r, "10.1.2.3", "https", identity);
  EXPECT_EQ(head.find("forged"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nX-Client-Identity: CN=alice; DNS:alice.example\r\n"),
            std::string::npos)
      << head;
  EXPECT_EQ(head, headBytes(out));
}

TEST(ForwardedIdentity, AnEmptyValueAddsNothingButStillDropsTheClients) {
  const auto r = forgedIdentity();
  const ForwardedIdentity anonymous{"X-Client-Identity", ""};
  const auto out = makeUpstreamRequest(r, "10.1.2.3", "https", anonymous);
  EXPECT_EQ(out.count("X-Client-Identity"), 0u);
  const std::string head = upstreamRequestHead(r, "10.1.2.3", "https", anonymous);
  EXPECT_EQ(lowered(head).find("x-client-identity"), std::string::npos) << head;
  EXPECT_EQ(head, headBytes(out));
}

TEST(ForwardedIdentity, IsAddedOnceWhenTheClientSentNone) {
  const ForwardedIdentity identity{"X-Client-Identity", "CN=alice"};
  const auto out = makeUpstreamRequest(validRequest(), "10.1.2.3", "https", identity);
  EXPECT_EQ(out.count("X-Client-Identity"), 1u);
  EXPECT_EQ(out["X-Client-Identity"], "CN=alice");
  EXPECT_EQ(upstreamRequestHead(validRequest(), "10.1.2.3", "https", identity), headBytes(out));
}

TEST(ForwardedIdentity, WithoutAHeaderNameTheClientsHeadersPassAsAnyOther) {
  const auto r = forgedIdentity();
  const auto out = makeUpstreamRequest(r, "10.1.2.3", "https", ForwardedIdentity{});
  EXPECT_EQ(out.count("X-Client-Identity"), 2u);
  EXPECT_EQ(upstreamRequestHead(r, "10.1.2.3", "https", ForwardedIdentity{}), headBytes(out));
}

}  // namespace
}  // namespace wsgate::gateway
