// HTTP heads written as wire bytes in one contiguous buffer: the forwarded upgrade request and
// the backend's 101 go out with one send each (Beast's serializer hands the kernel a scatter
// list of every field's pieces through a stack of composed operations).
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "codec/head_fields.h"

namespace wsgate::gateway {

// Appends a head line by line; finish() adds the blank line and hands the bytes over.
class HeadWriter {
 public:
  HeadWriter() : HeadWriter(std::string()) {}
  // Writes into `storage`'s memory (its bytes are dropped): a caller done with one head can
  // spare the next one an allocation.
  explicit HeadWriter(std::string storage) : out_(std::move(storage)) {
    out_.clear();
    out_.reserve(512);
  }
  // "METHOD target HTTP/1.x"
  void requestLine(std::string_view method, std::string_view target, unsigned version);
  // "HTTP/1.x code reason"
  void statusLine(unsigned version, unsigned code, std::string_view reason);
  // "Name: value"
  void field(std::string_view name, std::string_view value);
  std::string finish();

 private:
  std::string out_;
};

// A parsed request head as wire bytes: its request line, then every field in order.
std::string headBytes(const RequestHead& request);
// A parsed response head as wire bytes; the reason it carries, else the standard one. Written
// into `storage`'s memory (see HeadWriter).
std::string headBytes(const ResponseHead& response, std::string storage = {});

}  // namespace wsgate::gateway
