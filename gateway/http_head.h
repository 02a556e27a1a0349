// A parsed HTTP head written back as wire bytes in one contiguous buffer: the forwarded upgrade
// request and the backend's 101 go out with one send each (Beast's serializer hands the kernel
// a scatter list of every field's pieces through a stack of composed operations).
#pragma once

#include <string>

#include <boost/beast/http/message.hpp>

namespace wsgate::gateway {

// "METHOD target HTTP/1.1\r\n", then every field as "Name: value\r\n", then "\r\n".
std::string headBytes(const boost::beast::http::request_header<>& request);
// "HTTP/1.1 code reason\r\n" (the reason the message carries, else the standard one), then the
// fields as above.
std::string headBytes(const boost::beast::http::response_header<>& response);

}  // namespace wsgate::gateway
