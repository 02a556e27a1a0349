// The parsed HTTP heads of a handshake: the client's upgrade request and the backend's answer.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <type_traits>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace wsgate::gateway {

// Beast's fields allocate once per field. A handshake's heads all die with the handshake, so it
// hands its parsers a memory resource of its own (one block); heads built anywhere else use the
// heap. Unlike std::pmr::polymorphic_allocator this one is move-assignable, which Beast's
// fields require, and a copy of a head always lands on the heap, never in another's block.
template <class T>
class HeadAllocator {
 public:
  using value_type = T;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_copy_assignment = std::false_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  HeadAllocator() noexcept = default;
  explicit HeadAllocator(std::pmr::memory_resource* resource) noexcept : resource_(resource) {}
  template <class U>
  HeadAllocator(const HeadAllocator<U>& other) noexcept : resource_(other.resource()) {}

  T* allocate(std::size_t n) {
    return static_cast<T*>(resource_->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    resource_->deallocate(p, n * sizeof(T), alignof(T));
  }
  HeadAllocator select_on_container_copy_construction() const noexcept { return {}; }
  std::pmr::memory_resource* resource() const noexcept { return resource_; }

  template <class U>
  bool operator==(const HeadAllocator<U>& other) const noexcept {
    return resource_ == other.resource();
  }

 private:
  std::pmr::memory_resource* resource_ = std::pmr::new_delete_resource();
};

using HeadFields = boost::beast::http::basic_fields<HeadAllocator<char>>;
using RequestHead = boost::beast::http::request_header<HeadFields>;
using ResponseHead = boost::beast::http::response_header<HeadFields>;
// A whole answer: the gateway's own refusals, and a backend's passed back.
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body, HeadFields>;
using RequestParser =
    boost::beast::http::request_parser<boost::beast::http::empty_body, HeadAllocator<char>>;
using ResponseParser =
    boost::beast::http::response_parser<boost::beast::http::string_body, HeadAllocator<char>>;

}  // namespace wsgate::gateway
