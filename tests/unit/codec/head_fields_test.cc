#include "codec/head_fields.h"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <memory_resource>
#include <string_view>
#include <tuple>
#include <utility>

namespace wsgate::gateway {
namespace {

namespace http = boost::beast::http;

// Counts what goes through it, and hands it on to the heap.
class CountingResource final : public std::pmr::memory_resource {
 public:
  size_t allocations = 0;
  size_t live_bytes = 0;

 private:
  void* do_allocate(size_t bytes, size_t align) override {
    ++allocations;
    live_bytes += bytes;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, size_t bytes, size_t align) override {
    live_bytes -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

constexpr std::string_view kRequest =
    "GET /chat HTTP/1.1\r\n"
    "Host: chat.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

RequestParser parserOn(std::pmr::memory_resource& memory) {
  return RequestParser(std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(HeadAllocator<char>(&memory)));
}

void parse(RequestParser& parser) {
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(kRequest.data(), kRequest.size()), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_header_done());
}

TEST(HeadFieldsTest, AParsersFieldsComeFromTheMemoryItIsGiven) {
  CountingResource memory;
  {
    RequestParser parser = parserOn(memory);
    parse(parser);
    const RequestHead& head = parser.get().base();
    EXPECT_EQ(head[http::field::sec_websocket_key], "dGhlIHNhbXBsZSBub25jZQ==");
    EXPECT_EQ(head.target(), "/chat");
    // One per field at least (Beast allocates each field, and the target).
    EXPECT_GE(memory.allocations, 5u);
  }
  EXPECT_EQ(memory.live_bytes, 0u);
}

TEST(HeadFieldsTest, AHandshakesBlockTakesTheUsualHeadWithoutTheHeap) {
  CountingResource heap;
  std::array<std::byte, 2048> block;
  std::pmr::monotonic_buffer_resource memory(block.data(), block.size(), &heap);
  RequestParser parser = parserOn(memory);
  parse(parser);
  EXPECT_EQ(heap.allocations, 0u);
}

TEST(HeadFieldsTest, ACopyOfAHeadLivesOnTheHeapNotInTheOriginalsMemory) {
  CountingResource memory;
  RequestParser parser = parserOn(memory);
  parse(parser);
  const size_t before = memory.allocations;
  const RequestHead copy = parser.get().base();
  EXPECT_EQ(memory.allocations, before);
  EXPECT_EQ(copy.get_allocator().resource(), std::pmr::new_delete_resource());
  EXPECT_EQ(copy[http::field::host], "chat.example.com");
}

TEST(HeadFieldsTest, AHeadBuiltAnywhereElseUsesTheHeap) {
  RequestHead head;
  head.set(http::field::host, "example.com");
  EXPECT_EQ(head.get_allocator().resource(), std::pmr::new_delete_resource());
  HttpResponse response(http::status::not_found, 11);
  response.set(http::field::server, "wsgate");
  EXPECT_EQ(response.get_allocator().resource(), std::pmr::new_delete_resource());
}

}  // namespace
}  // namespace wsgate::gateway
