#include "codec/http_head.h"

#include <gtest/gtest.h>

#include <sstream>

#include <boost/beast/http.hpp>

namespace wsgate::gateway {
namespace {

namespace http = boost::beast::http;

// Beast's own serializer, as the reference for what goes on the wire.
template <typename Header>
std::string beastBytes(const Header& header) {
  std::ostringstream out;
  out << header;
  return out.str();
}

TEST(HttpHeadTest, RequestHeadIsWhatBeastWouldWrite) {
  RequestHead request;
  request.method(http::verb::get);
  request.target("/chat?room=1");
  request.version(11);
  request.set(http::field::host, "chat.example.com");
  request.set(http::field::upgrade, "websocket");
  request.set(http::field::connection, "Upgrade");
  request.set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  request.insert("X-Custom", "a");
  request.insert("X-Custom", "b");
  EXPECT_EQ(headBytes(request), beastBytes(request));
  EXPECT_EQ(headBytes(request).substr(0, 27), "GET /chat?room=1 HTTP/1.1\r\n");
  EXPECT_TRUE(headBytes(request).ends_with("\r\nX-Custom: b\r\n\r\n"));
}

TEST(HttpHeadTest, ResponseHeadKeepsTheBackendsReason) {
  ResponseHead response;
  response.result(http::status::switching_protocols);
  response.reason("Let's Go");
  response.version(11);
  response.set(http::field::upgrade, "websocket");
  response.set(http::field::connection, "Upgrade");
  response.set("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(headBytes(response), beastBytes(response));
  EXPECT_EQ(headBytes(response).substr(0, 23), "HTTP/1.1 101 Let's Go\r\n");
}

TEST(HttpHeadTest, ResponseWithoutReasonGetsTheStandardOne) {
  ResponseHead response;
  response.result(http::status::switching_protocols);
  response.version(11);
  EXPECT_EQ(headBytes(response), "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  EXPECT_EQ(headBytes(response), beastBytes(response));
}

TEST(HttpHeadTest, ResponseHeadIsWrittenIntoTheStorageItIsGiven) {
  ResponseHead response;
  response.result(http::status::switching_protocols);
  response.version(11);
  response.set(http::field::upgrade, "websocket");
  std::string storage(600, 'x');  // a head already sent: its bytes must not show
  const char* memory = storage.data();
  const std::string head = headBytes(response, std::move(storage));
  EXPECT_EQ(head, beastBytes(response));
  EXPECT_EQ(head.data(), memory);
}

}  // namespace
}  // namespace wsgate::gateway
