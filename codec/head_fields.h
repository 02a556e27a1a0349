// The parsed HTTP heads of a handshake: the client's upgrade request and the backend's answer.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

namespace wsgate::gateway {

using HeadFields = boost::beast::http::fields;
using RequestHead = boost::beast::http::request_header<HeadFields>;
using ResponseHead = boost::beast::http::response_header<HeadFields>;

}  // namespace wsgate::gateway
